"""The LSTM system (paper Sec. 4.2): sine, Lorenz and Van der Pol rows of Table 1.

* :mod:`.data`   the three dataset generators (deterministic per seed), the split and scaling
* :mod:`.series_file` the user's own series (``csv:FILE``, ``npy:FILE``)
* :mod:`.model`  ``nn.LSTM(1, H)`` + read-out, its initialisation and training
* :mod:`.probe`  the gates recomputed step by step: reaction and diffusion (Eqs. 11, 13, 16)
* :mod:`.system` the plug-in that ties them to the balance meter, with its controls
"""

from rdbench.systems.lstm.system import LSTMSettings, LSTMSystem

__all__ = ["LSTMSettings", "LSTMSystem"]
