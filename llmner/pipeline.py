"""The in-process pipeline: chunk -> generate -> select -> merge to document offsets.

OWNED BY the selector/pipeline helper. Contract used by the CLI and the workers:

    pipe = Pipeline.from_bundle(path_or_None)            # None = the default bundle
    chunks = pipe.chunk(doc)                             # list[Chunk], exact offsets
    per_chunk = pipe.infer_chunks(chunks)                # list[list[Entity]] in DOCUMENT offsets
    record = pipe.assemble(doc, chunks, per_chunk)       # ResultRecord (merged, deduped, nesting kept)
    records = pipe.process(docs)                         # the three above, batched across documents
    pipe.model_ids                                       # {"generator": ..., "selector": ...}
"""
