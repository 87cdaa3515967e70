"""System plug-ins. Each module owns one system's dynamics; :mod:`.base` is the protocol."""
