"""Dataset browser: open any dataset (samples, local files, uploads, the hub) as memory-mapped Arrow, then page,
search, filter, sort, summarise and export it through a locked-down SQL engine. Never imports gradio."""

from databrowser.browser import DatasetBrowser, Page
from databrowser.errors import DatasetError, QueryTimeoutError, RefusedError
from databrowser.query import ViewSpec
from databrowser.samples import SAMPLES, Sample, register
from databrowser.sources import SourceRef

__all__ = ["DatasetBrowser", "DatasetError", "Page", "QueryTimeoutError", "RefusedError", "SAMPLES", "Sample",
           "SourceRef", "ViewSpec", "register"]
