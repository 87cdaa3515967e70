"""The DDPM system (paper Sec. 3.3 and 4.3): a U-Net noise predictor trained on images, then
sampled with every reverse step split into reaction (the learned drift) and diffusion (the
injected noise).

Modules: :mod:`.data` (datasets), :mod:`.model` (the U-Net), :mod:`.schedule` (noise schedule
and the split reverse step), :mod:`.sample` (the probed sampler), :mod:`.train` (training and
checkpoints), :mod:`.system` (the plug-in named in ``conf/systems/ddpm.yaml``).
"""
