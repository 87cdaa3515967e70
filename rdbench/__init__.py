"""rdbench: the reaction/diffusion balance of Gray-Scott, LSTM and DDPM systems, tracked in MLflow."""

__version__ = "0.1.0"
