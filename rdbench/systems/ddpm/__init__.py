"""The DDPM system (paper Sec. 3.3 and 4.3): a U-Net noise predictor trained on images, then
sampled with every reverse step split into reaction (the learned drift) and diffusion (the
injected noise).

Modules: :mod:`.data` (named datasets), :mod:`.user_images` (``imagefolder:`` and ``npz:``),
:mod:`.model` (the U-Net), :mod:`.schedule` (noise schedules and the split reverse step),
:mod:`.sample` (the probed sampler), :mod:`.train` (training and checkpoints), :mod:`.oracle`
(the exact denoiser), :mod:`.pretrained` (public diffusers pipelines), :mod:`.sweep` (R of the
exact denoiser against T per schedule), :mod:`.system` (the plug-in named in
``conf/systems/ddpm.yaml``).
"""
