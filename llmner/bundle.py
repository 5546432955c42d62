"""A model bundle: everything the pipeline needs, in one directory.

    <bundle>/
      bundle.json        BundleManifest: format version, ids, codec, decoding mode, thresholds
      calibration.json   what ``llmner calibrate`` chose the per-schema thresholds from, optional
      generator/         a generator directory (llmner.modeling.generator: config + LoRA adapter + schemas)
      selector/          a selector directory (llmner.modeling.selector), optional
      normalizer/        entity normalizer (llmner.normalization.store), optional: used when present
      reader/            a reader directory (llmner.modeling.reader), optional: it tags the schemas
                         ``reader_schemas`` names instead of the generator and selector
      proposers/<name>/  reader directories, optional: under the schemas each ``proposers`` entry names,
                         that reader's spans join the generator's candidates, and the selector judges them

This module writes the bundle's own files (``bundle.json``, ``calibration.json``) and assembles the
parts; each part's directory is written by its model class.

The threshold in ``bundle.json`` (when set) overrides the selector's own, so a bundle can be
re-tuned without touching the selector weights (the ONNX cache key does not change either).
``selector_thresholds`` holds per-schema thresholds that ``llmner calibrate`` chose on each corpus's
dev candidates; schemas without one use the global threshold. ``generator_thresholds`` does the same
for schemas whose language the selector does not judge (Chinese with the MiniLM selector): there the
cut is on the generator's own probability of the entity's tags (``Entity.generator_score``), and a
schema without one keeps every candidate.

``prompt_schemas`` lets a schema be asked for under one naming and generated under another: with
``{"clinical_zh": "cmeee"}`` a Chinese note is prompted with CMeEE's type codes, the naming the generator
tags best (measured on dev), and its entities are reported under ``clinical_zh``'s readable names, of
which those codes are aliases. Thresholds and the open bias are looked up under the prompted schema,
the one they were calibrated on.

The default bundle is ``llmner/bundles/default/`` inside the installed package when it exists
(shipped with a release). Without it ``Pipeline.from_bundle(None)`` falls back to the base
SmolLM2 zero-shot with constrained decoding and no selector, and logs a warning saying so.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from llmner.errors import ConfigError, DataNotFoundError

MANIFEST_NAME = "bundle.json"
CALIBRATION_NAME = "calibration.json"
BUNDLE_FORMAT_VERSION = 1
GENERATOR_DIR = "generator"
SELECTOR_DIR = "selector"
NORMALIZER_DIR = "normalizer"
READER_DIR = "reader"
PROPOSERS_DIR = "proposers"
# Where bundles written before ``proposers`` existed (session 39) kept their one proposer.
LEGACY_PROPOSER_DIR = "proposer"
# The default bundle ships inside the package (a wheel, every image): a bundle larger than this is
# refused by `llmner bundle`, and anything a bundle would carry (a normalizer's own encoder) must fit.
# 30 MB until session 37; the Chinese reader's head (about 2.3 MB at fp16) took it past, and in session 39
# the English proposer's (about 1.9 MB at fp16) took it past 34 MB, and in session 40 the NCBI-Disease
# proposer's (another 1.9 MB) past 36 MB.
MAX_SHIPPED_BUNDLE_BYTES = 38_000_000


@dataclass(slots=True)
class ProposerEntry:
    """One proposer of a bundle: the reader in ``directory`` (relative to the bundle) proposes, under the
    schemas (calibration keys) ``schemas`` names, its spans of the schema's types from span score
    ``threshold`` (chosen on held-out training records); they join the generator's candidates, the
    selector judges them like the generator's, and one that overlaps a kept entity of its type goes
    (llmner.decoding.overlaps)."""

    directory: str
    id: str = ""
    schemas: list[str] = field(default_factory=list)
    threshold: float = 0.0

    @classmethod
    def from_dict(cls, data: Any, where: str) -> ProposerEntry:
        if not isinstance(data, dict) or set(data) - {f.name for f in fields(cls)} or "directory" not in data:
            raise ConfigError(f"{where}: a proposer is an object with directory, id, schemas and threshold, got {data!r}")
        entry = cls(**data)
        parts = Path(entry.directory).parts if isinstance(entry.directory, str) else ()
        if (not parts or Path(entry.directory).is_absolute() or ".." in parts
                or parts[0] in (GENERATOR_DIR, SELECTOR_DIR, NORMALIZER_DIR, READER_DIR)):
            raise ConfigError(f"{where}: a proposer's directory must be a folder of the bundle of its own, got {entry.directory!r}")
        if not isinstance(entry.schemas, list) or not entry.schemas or not all(isinstance(v, str) and v for v in entry.schemas):
            raise ConfigError(f"{where}: a proposer's schemas must be a non-empty list of schema names, got {entry.schemas!r}")
        cut = entry.threshold
        if not isinstance(cut, (int, float)) or isinstance(cut, bool) or not 0.0 <= float(cut) <= 1.0:
            raise ConfigError(f"{where}: a proposer's threshold must be a number in [0, 1], got {cut!r}")
        return entry


@dataclass(slots=True)
class BundleManifest:
    name: str = "llmner-bundle"
    generator_id: str = ""
    selector_id: str = ""
    codec: str = "inline"
    decoding_mode: str = "speculative"      # free | constrained | speculative (constrained output, faster)
    selector_threshold: float | None = None  # None: the selector's own (chosen on dev)
    selector_thresholds: dict[str, float] = field(default_factory=dict)  # schema -> threshold (llmner calibrate)
    generator_thresholds: dict[str, float] = field(default_factory=dict)  # schema -> generator_score threshold for
                                                                          # candidates the selector does not judge
    has_selector: bool = True
    default_schemas: dict[str, str] = field(default_factory=dict)   # language -> schema name override
    selector_languages: list[str] = field(default_factory=list)     # languages the selector judges ([]: all)
    sentences_per_chunk: int = 1            # sentences per chunk the generator was trained on: the pipeline chunks alike
    open_bias: dict[str, float] = field(default_factory=dict)  # schema -> logit bonus for opening a tag (chosen on dev)
    # A tokens-head selector also proposes the spans it tags; one is kept when its score reaches the
    # schema's proposal threshold (null there: no proposals for that schema), else the global one
    # (null: no proposals). Chosen on dev by benchmarks/selector_proposals.py.
    proposal_threshold: float | None = None
    proposal_thresholds: dict[str, float | None] = field(default_factory=dict)
    # Where a kept proposal and a kept generator candidate of its type overlap, which stays: "both",
    # "generator" or "selector" (llmner.decoding.overlaps), per schema, else the global rule. Chosen on dev
    # by benchmarks/selector_proposals.py with the thresholds.
    proposal_overlap: str = "both"
    proposal_overlaps: dict[str, str] = field(default_factory=dict)
    # The selector relabels each generator candidate with the schema type it scores highest (a schema
    # the generator was not trained on, whose names it confuses), per schema, else the global setting.
    # Chosen on dev by benchmarks/schemas.py --selector (docs/training.md).
    relabel: bool = False
    relabel_schemas: dict[str, bool] = field(default_factory=dict)
    prompt_schemas: dict[str, str] = field(default_factory=dict)  # schema -> schema whose names prompt the generator
    consistency: dict[str, Any] | None = None   # document-level consistency after merging (a ConsistencyConfig's
                                                # fields, llmner.decoding.consistency); None = off
    # Schemas (as prompted: calibration keys) the bundle's reader/ tags instead of the generator and
    # selector, and the span score from which its spans are kept (chosen on held-out training records).
    reader_id: str = ""
    reader_schemas: list[str] = field(default_factory=list)
    reader_threshold: float = 0.0
    # Readers that propose candidates, each under its own schemas (ProposerEntry); a schema has at most one.
    proposers: list[ProposerEntry] = field(default_factory=list)
    notes: str = ""
    format_version: int = BUNDLE_FORMAT_VERSION

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        # Left out while unset, so that a bundle without proposals keeps the bytes (and the report
        # fingerprint) it had before the field existed.
        if out["proposal_threshold"] is None and not out["proposal_thresholds"]:
            del out["proposal_threshold"], out["proposal_thresholds"]
        if out["proposal_overlap"] == "both" and not out["proposal_overlaps"]:
            del out["proposal_overlap"], out["proposal_overlaps"]
        if not out["relabel"] and not out["relabel_schemas"]:
            del out["relabel"], out["relabel_schemas"]
        if not out["reader_schemas"] and not out["reader_id"] and out["reader_threshold"] == 0.0:
            del out["reader_id"], out["reader_schemas"], out["reader_threshold"]
        if not out["proposers"]:
            del out["proposers"]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "bundle.json") -> BundleManifest:
        data = _with_proposers(dict(data), where)
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise ConfigError(f"{where}: unknown field(s) {sorted(unknown)}")
        if data.get("format_version") != BUNDLE_FORMAT_VERSION:
            raise ConfigError(f"{where}: unsupported format_version {data.get('format_version')!r} (expected {BUNDLE_FORMAT_VERSION})")
        threshold = data.get("selector_threshold")
        if threshold is not None and not 0.0 <= float(threshold) <= 1.0:
            raise ConfigError(f"{where}: selector_threshold must be in [0, 1], got {threshold}")
        for key in ("selector_thresholds", "generator_thresholds"):
            per_schema = data.get(key) or {}
            if not isinstance(per_schema, dict):
                raise ConfigError(f"{where}: {key} must map schema names to thresholds")
            for schema, value in per_schema.items():
                if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 <= float(value) <= 1.0:
                    raise ConfigError(f"{where}: {key}[{schema!r}] must be a number in [0, 1], got {value!r}")
        proposal = data.get("proposal_threshold")
        if proposal is not None and (not isinstance(proposal, (int, float)) or isinstance(proposal, bool)
                                     or not 0.0 <= float(proposal) <= 1.0):
            raise ConfigError(f"{where}: proposal_threshold must be a number in [0, 1] or null, got {proposal!r}")
        proposals = data.get("proposal_thresholds") or {}
        if not isinstance(proposals, dict) or not all(
                v is None or (isinstance(v, (int, float)) and not isinstance(v, bool) and 0.0 <= float(v) <= 1.0)
                for v in proposals.values()):
            raise ConfigError(f"{where}: proposal_thresholds must map schema names to numbers in [0, 1] or null, got {proposals!r}")
        from llmner.decoding.overlaps import check_overlap_rule

        check_overlap_rule(data.get("proposal_overlap", "both"), f"{where}: proposal_overlap")
        rules = data.get("proposal_overlaps") or {}
        if not isinstance(rules, dict):
            raise ConfigError(f"{where}: proposal_overlaps must map schema names to rules, got {rules!r}")
        for schema, rule in rules.items():
            check_overlap_rule(rule, f"{where}: proposal_overlaps[{schema!r}]")
        relabels = data.get("relabel_schemas") or {}
        if not isinstance(data.get("relabel", False), bool) or not isinstance(relabels, dict) or not all(
                isinstance(v, bool) for v in relabels.values()):
            raise ConfigError(f"{where}: relabel must be true or false and relabel_schemas map schema names to true or "
                              f"false, got {data.get('relabel')!r} and {relabels!r}")
        biases = data.get("open_bias") or {}
        if not isinstance(biases, dict) or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and -10.0 <= float(v) <= 10.0 for v in biases.values()):
            raise ConfigError(f"{where}: open_bias must map schema names to numbers in [-10, 10], got {biases!r}")
        prompts = data.get("prompt_schemas") or {}
        if not isinstance(prompts, dict) or not all(isinstance(k, str) and isinstance(v, str) and v and k != v
                                                     for k, v in prompts.items()):
            raise ConfigError(f"{where}: prompt_schemas must map schema names to other schema names, got {prompts!r}")
        if data.get("consistency") is not None:
            from llmner.decoding.consistency import ConsistencyConfig

            if not isinstance(data["consistency"], dict):
                raise ConfigError(f"{where}: consistency must be an object of settings or null, got {data['consistency']!r}")
            try:
                ConsistencyConfig.from_dict(data["consistency"])
            except ConfigError as exc:
                raise ConfigError(f"{where}: {exc}") from None
        names = data.get("reader_schemas") or []
        if not isinstance(names, list) or not all(isinstance(v, str) and v for v in names):
            raise ConfigError(f"{where}: reader_schemas must be a list of schema names, got {names!r}")
        cut = data.get("reader_threshold", 0.0)
        if not isinstance(cut, (int, float)) or isinstance(cut, bool) or not 0.0 <= float(cut) <= 1.0:
            raise ConfigError(f"{where}: reader_threshold must be a number in [0, 1], got {cut!r}")
        if not isinstance(data.get("proposers", []), list):
            raise ConfigError(f"{where}: proposers must be a list of proposers, got {data['proposers']!r}")
        entries = [ProposerEntry.from_dict(e, where) for e in data.get("proposers", [])]
        proposed = [name for e in entries for name in e.schemas]
        twice = sorted({name for name in proposed if proposed.count(name) > 1})
        if twice:
            raise ConfigError(f"{where}: {twice} proposed for by more than one proposer")
        if len({e.directory for e in entries}) != len(entries):
            raise ConfigError(f"{where}: two proposers share a directory")
        overlap = set(names) & set(proposed)
        if overlap:
            raise ConfigError(f"{where}: {sorted(overlap)} both read by the reader and proposed for by a proposer")
        data["proposers"] = entries
        per_chunk = data.get("sentences_per_chunk", 1)
        if not isinstance(per_chunk, int) or isinstance(per_chunk, bool) or per_chunk < 1:
            raise ConfigError(f"{where}: sentences_per_chunk must be an integer >= 1, got {per_chunk!r}")
        return cls(**data)


def load_manifest(path: str | Path) -> BundleManifest:
    root = Path(path)
    file = root / MANIFEST_NAME
    if not file.is_file():
        raise DataNotFoundError(f"not a model bundle: {file} missing")
    try:
        data = json.loads(file.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{file} is not valid JSON: {exc}") from None
    manifest = BundleManifest.from_dict(data, where=str(file))
    if not (root / GENERATOR_DIR).is_dir():
        raise DataNotFoundError(f"bundle {root}: {GENERATOR_DIR}/ missing")
    if manifest.has_selector and not (root / SELECTOR_DIR).is_dir():
        raise DataNotFoundError(f"bundle {root}: bundle.json says it has a selector but {SELECTOR_DIR}/ is missing")
    if manifest.reader_schemas and not (root / READER_DIR).is_dir():
        raise DataNotFoundError(f"bundle {root}: bundle.json names reader_schemas but {READER_DIR}/ is missing")
    for entry in manifest.proposers:
        if not (root / entry.directory).is_dir():
            raise DataNotFoundError(f"bundle {root}: bundle.json names a proposer in {entry.directory}/, which is missing")
    return manifest


def _with_proposers(data: dict[str, Any], where: str) -> dict[str, Any]:
    """``data`` with a session-39 bundle's one proposer (``proposer_id``, ``proposer_schemas``,
    ``proposer_threshold``, in ``proposer/``) as its one ``proposers`` entry."""
    legacy = {key: data.pop(key) for key in ("proposer_id", "proposer_schemas", "proposer_threshold") if key in data}
    if not legacy:
        return data
    if "proposers" in data:
        raise ConfigError(f"{where}: proposers and the older proposer_* fields together")
    if legacy.get("proposer_schemas"):
        data["proposers"] = [{"directory": LEGACY_PROPOSER_DIR, "id": legacy.get("proposer_id", ""),
                              "schemas": legacy["proposer_schemas"], "threshold": legacy.get("proposer_threshold", 0.0)}]
    return data


def default_bundle_path() -> Path | None:
    """``llmner/bundles/default`` when shipped, else None."""
    path = Path(__file__).resolve().parent / "bundles" / "default"
    return path if (path / MANIFEST_NAME).is_file() else None


def save_bundle(path: str | Path, generator_dir: str | Path, selector_dir: str | Path | None,
                manifest: BundleManifest, reader_dir: str | Path | None = None,
                proposer_dirs: dict[str, str | Path] | None = None) -> Path:
    """Assemble a bundle from a saved generator and (optionally) a saved selector, reader and proposers
    (readers): ``proposer_dirs`` maps each ``manifest.proposers`` entry's directory to the reader
    directory copied there."""
    root = Path(path)
    root.mkdir(parents=True, exist_ok=True)
    for src, name in _bundle_parts(generator_dir, selector_dir, manifest, reader_dir, proposer_dirs):
        if src is None:
            continue
        src = Path(src)
        if not src.is_dir():
            raise DataNotFoundError(f"bundle part not found: {src}")
        target = root / name
        if target.resolve() != src.resolve():
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(src, target, ignore=shutil.ignore_patterns("checkpoints"))
    manifest.has_selector = selector_dir is not None
    return write_manifest(root, manifest)


def _bundle_parts(generator_dir: str | Path, selector_dir: str | Path | None, manifest: BundleManifest,
                  reader_dir: str | Path | None, proposer_dirs: dict[str, str | Path] | None
                  ) -> list[tuple[str | Path | None, str]]:
    """(source directory or None, folder in the bundle) of every part ``save_bundle`` copies."""
    proposer_dirs = dict(proposer_dirs or {})
    unknown = set(proposer_dirs) - {entry.directory for entry in manifest.proposers}
    if unknown:
        raise ConfigError(f"proposer directories {sorted(unknown)} are not the directory of any of the manifest's proposers")
    return [(generator_dir, GENERATOR_DIR), (selector_dir, SELECTOR_DIR), (reader_dir, READER_DIR),
            *((src, name) for name, src in proposer_dirs.items())]


def write_manifest(root: str | Path, manifest: BundleManifest) -> Path:
    """(Re)write ``bundle.json`` of the bundle at ``root`` (atomically: a reader never sees half a file)."""
    _write_json(Path(root) / MANIFEST_NAME, manifest.to_dict())
    return Path(root)


def write_calibration(root: str | Path, calibration: dict[str, Any]) -> Path:
    """(Re)write ``calibration.json`` of the bundle at ``root``: the record of a ``llmner calibrate`` run
    (its settings and every schema's numbers), kept beside the thresholds it wrote into ``bundle.json``."""
    path = Path(root) / CALIBRATION_NAME
    _write_json(path, calibration)
    return path


def _json_text(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=2)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(_json_text(data))
    tmp.replace(path)


def bundle_size_bytes(path: str | Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def assembled_size_bytes(path: str | Path, generator_dir: str | Path, selector_dir: str | Path | None,
                         manifest: BundleManifest, reader_dir: str | Path | None = None,
                         proposer_dirs: dict[str, str | Path] | None = None) -> int:
    """The size ``save_bundle(path, generator_dir, selector_dir, manifest, reader_dir, proposer_dirs)`` would leave at ``path``: the
    parts it copies (their ``checkpoints`` left out, as it leaves them out), what else ``path`` already
    holds (a normalizer, a calibration record) and ``bundle.json``. Known before anything is written, so
    that a bundle over a size limit is refused without leaving a bundle behind."""
    root = Path(path)
    copied = {name: Path(src) for src, name in _bundle_parts(generator_dir, selector_dir, manifest, reader_dir, proposer_dirs)
              if src is not None}
    total = sum(p.stat().st_size for src in copied.values() for p in src.rglob("*")
                if p.is_file() and "checkpoints" not in p.relative_to(src).parts)
    if root.is_dir():
        kept = (p for p in root.rglob("*") if p.is_file())
        total += sum(p.stat().st_size for p in kept
                     if not any(p.relative_to(root).is_relative_to(name) for name in (*copied, MANIFEST_NAME)))
    written = replace(manifest, has_selector=selector_dir is not None)     # as save_bundle writes it
    return total + len(_json_text(written.to_dict()).encode())
