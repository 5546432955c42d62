"""Command-line tools over the library's ONNX export (``python -m export.onnx_selector``).

Split: the export itself (fp32 graph, BERT fusion, int8 per-channel, fp16, parity and agreement
checks) lives in ``llmner.modeling.selector_export`` because the library must build the ONNX
files on its own, on first use, into the user cache (``llmner.runtime.onnx_selector``); ``export``
may import ``llmner`` but never the reverse. This package only adds explicit builds and reports.
"""
