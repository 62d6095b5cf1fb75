import logging
from typing import Mapping, Optional


class RankedLogger(logging.LoggerAdapter):
    """hydra-vertex: the template's rank-zero logger without Lightning (one process, rank 0)."""

    def __init__(
        self,
        name: str = __name__,
        rank_zero_only: bool = False,
        extra: Optional[Mapping[str, object]] = None,
    ) -> None:
        super().__init__(logger=logging.getLogger(name), extra=extra)
        self.rank_zero_only = rank_zero_only
