# hydra-vertex: instantiators, logging_utils and rich_utils need Lightning/rich (see VENDORED.md)
from src.utils.pylogger import RankedLogger
from src.utils.utils import extras, get_metric_value, task_wrapper
