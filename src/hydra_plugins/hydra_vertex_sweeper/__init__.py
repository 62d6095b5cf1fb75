"""hydra-vertex's Hydra sweeper: ``python APP.py -m hydra/sweeper=vertex`` (see ``config.py``)."""
