"""``python -m mnadlib.reproduce``: run the reproduction notebooks 01 -> 02 -> 03 -> 05 through papermill.

Each run gets its own folder ``runs/<name>/`` holding the executed notebooks, the data (for
synthped), the trained variants, ``results.json`` (03), the figures and ``manifest.json``
(parameters, versions, git commit, wall times: each notebook's, and the run's over its attempts). An existing run folder is never overwritten.
``--resume RUN`` continues an interrupted or failed run in its own folder with the parameters it
started with: finished notebooks are skipped, training continues from the last epoch's
checkpoint, and the executed copy of a notebook that is run again is kept beside the new one.
The manifest is rewritten after every notebook, so even a killed run says how far it got; a lock
on the run folder keeps a resume from racing a run that is still alive, and a resume removes the
temporary files and folders that writers killed mid-write left (``runlog.sweep``).
With ``--dataset NAME -p footage VIDEO`` the data are a video of your own normal scene with
anomalies injected into its second half (``mnadlib.inject``), written into the run folder.
02 runs once per trained variant (``pred_mem``, ``pred_nomem``, ``recon_mem`` by default), so
that 03 can fill its ablation table. The notebooks' own ``assert`` cells are the claims: when
one fails, papermill stops, the executed copy shows where, and the command exits with status 1.

The kernel is always this interpreter's ipykernel, whatever kernelspecs are installed, so a run
started from a virtual environment executes its notebooks in that environment.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from . import __version__
from .data import known_dataset
from .pipeline import VARIANTS, format_table, table1_columns
from .runlog import LOCK, MANIFEST, RunLocked, attempt_path, hold, read_manifest, sweep, write_manifest
from .train import git_commit, versions as train_versions

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = ("01_prepare_data", "02_train", "03_reproduce_auc", "05_result_figures")
SMOKE = {"epochs": 1, "max_steps": 2, "min_auc": 0.0, "tsne_frames": 4, "svg": False}
CLAIM_AUC = 0.70  # 03 asserts this frame AUC on synthped with the cpu preset (lowest over seeds 0-4: 0.718, docs/frame_auc.md)
SET_BY_RUN = {  # notebook parameters the pipeline sets itself, with the option that sets them
    "out_dir": "--name and --runs-dir", "dataset": "--dataset", "data_root": "--data-root",
    "checkpoint": "nothing: 03 and 05 evaluate the run's own <method>_mem model", "use_memory": "--variants",
    "resume": "--resume RUN_DIR",
}
INTERRUPTED = 130  # exit status after Ctrl-C, as a shell reports SIGINT
KERNEL_LOG = "kernel.log"  # under notebooks/: the kernels' own stderr, one header line per notebook
TERMINATED = 143  # exit status after SIGTERM (kill PID, a scheduler's time limit, timeout), as a shell reports it
RUN_OPTIONS = ("name", "runs_dir", "config", "param", "smoke", "dataset", "data_root", "variants")  # fixed for --resume


class Terminated(KeyboardInterrupt):
    """SIGTERM, unwound as Ctrl-C is: the manifest records the step as interrupted and the kernel is shut down."""


def _terminate(signum: int, frame: Any) -> None:
    """The SIGTERM handler: raise Terminated in the main thread."""
    raise Terminated


@contextmanager
def _sigterm_unwinds() -> Iterator[None]:
    """Handle SIGTERM as an interrupt while the pipeline runs (not from another thread, not over a caller's own handler)."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) != signal.SIG_DFL:
        yield
        return
    signal.signal(signal.SIGTERM, _terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _stopped(exc: KeyboardInterrupt) -> tuple[str, int]:
    """What stopped the run, in words, and the exit status it gives: Ctrl-C 130, SIGTERM 143."""
    return ("terminated (SIGTERM)", TERMINATED) if isinstance(exc, Terminated) else ("interrupted", INTERRUPTED)


class PipelineError(RuntimeError):
    """A notebook of the pipeline failed; the message names it and its executed copy.

    ``ename`` and ``evalue`` are the failing cell's exception name and text ("" when the kernel died).
    """

    def __init__(self, message: str, ename: str = "", evalue: str = "") -> None:
        super().__init__(message)
        self.ename, self.evalue = ename, evalue


def claim_missed(exc: PipelineError) -> bool:
    """Whether 03's last cell failed on its claim, after it wrote ``results.json``."""
    return exc.ename == "AssertionError" and exc.evalue.startswith("claim missed")


def next_step(exc: PipelineError, out: Path) -> str:
    """What the user can do after a failed notebook: --resume only helps when the cause lies outside the run."""
    if claim_missed(exc):
        return ("notebook 03 measured the numbers but they miss the claim, so the figures (05) were not drawn; "
                f"the numbers are in the executed copy and {out / 'results.json'}. --resume would score the same "
                "checkpoints again: start a new run (e.g. other -p epochs or -p seed), or one with -p min_auc 0 "
                "to report without a claim")
    if exc.ename == "ConfigError" or exc.evalue.startswith("bad notebook parameters"):
        return ("a run keeps the parameters it started with, so --resume cannot fix this: start a new run "
                "with corrected -p values")
    if exc.ename == "AssertionError" and "differ from the published" in exc.evalue:
        return ("if the download is incomplete, complete it and continue with: python -m mnadlib.reproduce --resume "
                f"{out}; to run on part of the dataset, rename its folder and start a new run with that --dataset "
                "(a run keeps its --dataset)")
    if exc.ename == "DatasetConflict":
        return ("a run keeps its --dataset and --data-root, so --resume cannot fix this: start a new run with "
                "another --dataset or --data-root (or none: each run then generates its own data)")
    return f"after fixing the cause, continue with: python -m mnadlib.reproduce --resume {out}"


KERNEL_SOCKET = re.compile(r"mnadlib-kernel-(\d+)-\d+")


def remove_stale_kernel_sockets(folder: Path | None = None) -> list[Path]:
    """Remove the kernel sockets that a pipeline killed with ``kill -9`` left in the temp folder; return them.

    A socket is stale when the process whose id its name carries is gone; those of live processes stay.
    """
    removed: list[Path] = []
    if os.name != "posix":  # only POSIX kernels use these sockets (and os.kill(pid, 0) is Ctrl-C on Windows)
        return removed
    for path in Path(folder or tempfile.gettempdir()).glob("mnadlib-kernel-*"):
        match = KERNEL_SOCKET.fullmatch(path.name)
        if not match or not path.is_socket():
            continue
        try:
            os.kill(int(match[1]), 0)
        except ProcessLookupError:
            path.unlink(missing_ok=True)
            removed.append(path)
        except (PermissionError, OverflowError):  # another user's live process, or no process id at all
            continue
    return removed


def current_python_kernel(stderr_log: Path | None = None) -> type:
    """A kernel manager that launches ipykernel in ``sys.executable``, ignoring installed kernelspecs.

    With ``stderr_log`` the kernel's own stderr (its log, not the cells' output, which the notebook
    records) is appended there, so that a kernel shut down mid-reply by Ctrl-C does not print its
    traceback over the pipeline's one-line message.
    """
    from ipykernel.kernelspec import get_kernel_dict
    from jupyter_client import AsyncKernelManager
    from jupyter_client.kernelspec import KernelSpec

    remove_stale_kernel_sockets()

    class CurrentPythonKernel(AsyncKernelManager):
        """Kernel of the interpreter running the pipeline, over local sockets on POSIX (no TCP port opened)."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            if os.name == "posix":  # ipykernel warns that TCP without encryption can be read by other users
                self.transport = "ipc"
                self.ip = os.path.join(tempfile.gettempdir(), f"mnadlib-kernel-{os.getpid()}")

        @property
        def kernel_spec(self) -> KernelSpec:
            return KernelSpec(resource_dir="", **get_kernel_dict())

        async def _async_launch_kernel(self, kernel_cmd: list[str], **kw: Any) -> None:
            if stderr_log is None:
                return await super()._async_launch_kernel(kernel_cmd, **kw)
            with open(stderr_log, "ab") as fh:  # the kernel holds its own copy of the descriptor
                return await super()._async_launch_kernel(kernel_cmd, **{**kw, "stderr": fh})

    return CurrentPythonKernel


def notebook_parameters(name: str) -> dict[str, str]:
    """``{parameter: type name}`` declared by a notebook's parameters cell."""
    import papermill

    return {k: v["inferred_type_name"] for k, v in papermill.inspect_notebook(str(_source(name))).items()}


def _source(name: str) -> Path:
    """The notebook's paired .ipynb (kept in sync with its py:percent source by the tests)."""
    path = NOTEBOOK_DIR / f"{name}.ipynb"
    if not path.is_file():
        raise FileNotFoundError(f"notebook {path} not found: python -m mnadlib.reproduce runs from a source checkout "
                                "of mnadlib (the notebooks are not part of the installed package)")
    return path


PARAM_TYPES: dict[str, type | tuple[type, ...]] = {"int": int, "float": (int, float), "bool": bool, "str": str}


# a decimal number as Python reads it: YAML 1.1 (PyYAML) reads 1e-3 as text, wanting 1.0e-3
_DECIMAL = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def _as_declared(value: Any, type_name: str) -> Any:
    """A float parameter's value written as text like ``1e-3`` (YAML 1.1 leaves it a string) as that float."""
    if type_name == "float" and isinstance(value, str) and _DECIMAL.fullmatch(value.strip()):
        return float(value)
    return value


def _is_type(value: Any, type_name: str) -> bool:
    """Whether a -p value (parsed as YAML) suits a parameter declared ``name: type_name``; bools are not numbers."""
    return isinstance(value, PARAM_TYPES[type_name]) and (type_name == "bool" or not isinstance(value, bool))


def declared_params() -> dict[str, dict[str, str]]:
    """``{notebook: {parameter: type name}}`` for every notebook the pipeline runs."""
    return {n: notebook_parameters(n) for n in NOTEBOOKS}


def checked_params(user: Mapping[str, Any], declared: Mapping[str, Mapping[str, str]]) -> dict[str, Any]:
    """The -p / --config values as the notebooks ``declared`` them; ValueError for an unknown name or a wrong type."""
    unknown = sorted(set(user) - set().union(*declared.values()))
    if unknown:
        raise ValueError(f"unknown parameter(s) {unknown}; the notebooks take: "
                         + "; ".join(f"{n}: {', '.join(p)}" for n, p in declared.items()))
    wanted = {k: t for p in declared.values() for k, t in p.items()}
    typed = {k: _as_declared(v, wanted[k]) for k, v in user.items()}
    wrong = [f"{k} must be {wanted[k]}, got {type(v).__name__} {v!r}" for k, v in typed.items()
             if wanted[k] in PARAM_TYPES and not _is_type(v, wanted[k])]
    if wrong:
        raise ValueError("bad parameter(s): " + "; ".join(wrong))
    return typed


def _check_footage(user: dict[str, Any]) -> None:
    """Footage too short for notebook 01's inject settings is refused before a kernel starts (its header's count)."""
    from .data import list_videos
    from .inject import InjectConfig, check_length

    names = ("clip_length", "train_fraction", "height_fraction")
    cfg = InjectConfig(**{k: user[k] for k in names if k in user})
    sources = list_videos(user["footage"])
    if len(sources) != 1:
        raise ValueError(f"footage {user['footage']} holds {len(sources)} videos; give one video file or one folder of frames")
    check_length(user["footage"], len(sources[0]), cfg)


EXISTING = {"labels": "file", "original_model": "file", "original_keys": "file", "train_dir": "folder"}


def check_values(user: dict[str, Any]) -> None:
    """Refuse, before any notebook runs, a preset that does not exist or a path parameter that names nothing.

    The notebooks would refuse them too, but only after the earlier ones ran (01's data, 02's training).
    Paths are made absolute here, relative to the working directory the command was started in.
    """
    from .config import preset
    from .synth import get_preset

    if "preset" in user:
        preset(str(user["preset"]))
    if "synth_preset" in user:
        get_preset(str(user["synth_preset"]))
    for name, kind in EXISTING.items():
        if user.get(name):
            path = Path(str(user[name])).expanduser().resolve()
            if not (path.is_file() if kind == "file" else path.is_dir()):
                raise ValueError(f"-p {name} {path}: no such {kind}")
            user[name] = str(path)
    if bool(user.get("original_model")) != bool(user.get("original_keys")):
        raise ValueError("the authors' checkpoint is two files: give both -p original_model MODEL.pth and "
                         "-p original_keys KEYS.pt")


def plan(dataset: str, data_root: Path | None, out: Path, user: Mapping[str, Any], smoke: bool,
         variants: Sequence[str]) -> list[tuple[str, str, dict[str, Any]]]:
    """(executed notebook name, source notebook, parameters) for every step of the pipeline."""
    common: dict[str, Any] = {"dataset": dataset, "out_dir": str(out)}
    if data_root is not None:
        common["data_root"] = str(data_root)
    taken = sorted(set(user) & set(SET_BY_RUN))
    if taken:
        raise ValueError("the pipeline sets " + "; ".join(f"{k} (use {SET_BY_RUN[k]})" for k in taken)
                         + ": drop the -p / --config value")
    # overwrite: 01 never replaces a dataset at --data-root that another run or session made
    defaults: dict[str, Any] = {"min_auc": CLAIM_AUC if dataset == "synthped" else 0.0, "overwrite": False}
    if smoke:
        defaults.update(SMOKE)
    main = user.get("method", "pred")
    steps: list[tuple[str, str, dict[str, Any]]] = [("01_prepare_data", "01_prepare_data", {})]
    for v in variants:
        method, memory = VARIANTS[v]
        # resume: a checkpoint exists only when an earlier attempt in this run folder was interrupted
        steps.append((f"02_train_{v}", "02_train", {"method": method, "use_memory": memory, "resume": True}))
    ckpt = out / "train" / f"{main}_mem" / "model.pt"
    steps.append(("03_reproduce_auc", "03_reproduce_auc", {"checkpoint": str(ckpt)}))
    steps.append(("05_result_figures", "05_result_figures", {"checkpoint": str(ckpt)}))
    declared = declared_params()
    user = checked_params(user, declared)
    return [(run, src, {k: v for k, v in {**common, **defaults, **user, **fixed}.items() if k in declared[src]})
            for run, src, fixed in steps]


def execute(steps: Sequence[tuple[str, str, dict[str, Any]]], out: Path, log: dict[str, Any]) -> None:
    """Run every step not yet done with papermill into ``out/notebooks``; PipelineError names a failing one.

    A step is done when the manifest's log holds it with status ok. The manifest is rewritten
    after every step. An executed copy left by an earlier attempt is renamed, never overwritten.
    """
    import papermill

    (out / "notebooks").mkdir(parents=True, exist_ok=True)
    kernel_log = out / "notebooks" / KERNEL_LOG
    kernel = current_python_kernel(kernel_log)
    done = {s["notebook"] for s in log["steps"] if s["status"] == "ok"}
    for run, src, params in steps:
        if run in done:
            print(f"[{time.strftime('%H:%M:%S')}] {run}: done in an earlier attempt, skipped", flush=True)
            continue
        target = out / "notebooks" / f"{run}.ipynb"
        if target.exists():
            target.rename(attempt_path(target))
        print(f"[{time.strftime('%H:%M:%S')}] {run} {json.dumps(params)}", flush=True)
        t0, error, ename, evalue = time.time(), None, "", ""
        entry: dict[str, Any] = {"notebook": run, "parameters": params, "wall_s": None, "status": "running"}
        log["steps"].append(entry)
        write_manifest(out, log)
        with open(kernel_log, "a") as fh:
            fh.write(f"== {run}, {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        try:
            papermill.execute_notebook(str(_source(src)), str(target), parameters=params, kernel_name="python3",
                                       kernel_manager_class=kernel, progress_bar=False, cwd=str(out))
        except papermill.PapermillExecutionError as exc:
            error, ename, evalue = f"in cell {exc.exec_count} with {exc.ename}: {exc.evalue}", exc.ename, exc.evalue
        except KeyboardInterrupt:
            entry.update(wall_s=round(time.time() - t0, 1), status="interrupted")
            for name in ("asyncio", "papermill"):  # the abandoned cell's tasks would log the kernel's shutdown as its death
                logging.getLogger(name).setLevel(logging.CRITICAL + 1)
            raise
        except Exception as exc:  # the kernel died or did not start
            error = f"with {type(exc).__name__}: {exc}\nthe kernel's log: {kernel_log}"
        entry.update(wall_s=round(time.time() - t0, 1), status="failed" if error else "ok")
        write_manifest(out, log)
        if error:
            raise PipelineError(f"notebook {run} failed {error}\nexecuted copy: {target}", ename, evalue)
        print(f"    done in {time.time() - t0:.0f} s", flush=True)


def _versions() -> dict[str, str]:
    """Versions of the packages that shape the results: training's, then SSIM's, AUC's and the notebooks' runner."""
    import papermill
    import scipy
    import skimage
    import sklearn

    return {**train_versions(), "scipy": scipy.__version__,
            "scikit-image": skimage.__version__,  # type: ignore[attr-defined]  # skimage's __init__.pyi never declares it
            "scikit-learn": sklearn.__version__, "papermill": papermill.__version__}


def summary(out: Path) -> str:
    """The results table of a finished run; ValueError saying so when its ``results.json`` is missing or not 03's."""
    path = out / "results.json"
    try:
        return _table(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
        raise ValueError(f"cannot print the results table: {path} is missing or not what notebook 03 writes "
                         f"({type(exc).__name__}: {exc}); its executed copy in {out / 'notebooks'} shows the numbers") from None


def _table(res: dict[str, Any]) -> str:
    """The main AUC with its claim, Table 1, the ablation, the AUC per kind and size, from 03's ``results.json``."""
    main, claim = res["main"], res["claims"]
    macro = "- (no test video holds both classes)" if main["macro_auc"] is None else f"{100 * main['macro_auc']:.2f}%"
    verdict = ("no claim" if claim["holds"] is None else
               f"claim >= {100 * claim['min_auc']:.1f}%: {'holds' if claim['holds'] else 'MISSED'}")
    lines = [f"main model {main['variant']}: frame AUC {100 * main['frame_auc']:.2f}%, macro AUC {macro} ({verdict})",
             "", "Table 1 (frame AUC %; paper rows copied from the paper, not measured here)",
             format_table(res["table1"], table1_columns(res["params"]["dataset"]))]
    if res["ablation"]:
        lines += ["", "Ablation (frame and macro AUC %)", format_table(res["ablation"], ("model", "setting", "frame_auc", "macro_auc"))]
    if res.get("prediction_quality"):
        lines += ["", "Mean PSNR (dB) on normal and anomalous test frames, and the swing of normal frames' PSNR "
                      "within a video (sd): the model against copying the previous frame",
                  format_table(res["prediction_quality"],
                               ("predictor", "normal_psnr", "anomalous_psnr", "gap_db", "normal_sd_db"))]
    if res.get("by_kind"):
        lines += ["", "Frame AUC % of each anomaly kind (its frames against every normal frame; protocol and running-max)",
                  format_table(res["by_kind"], ("kind", "frames", "frame_auc", "frame_auc_running"))]
    if res.get("by_size"):
        masked = res.get("by_size_videos") or {}
        part = (f"; pixel masks for {masked['with_masks']} of {masked['test_videos']} test videos, the others' "
                "anomalous frames left out" if masked and masked["with_masks"] < masked["test_videos"] else "")
        lines += ["", f"Frame AUC % by the anomaly's visible area, % of the frame (protocol and running-max{part})",
                  format_table(res["by_size"], ("visible_area", "frames", "frame_auc", "frame_auc_running"))]
    return "\n".join(lines)


def _fresh_dir(runs_dir: Path, name: str | None, dataset: str) -> Path:
    """``runs_dir/name`` (absolute), refusing an existing one; without a name, ``<dataset>-<timestamp>``."""
    name = name or f"{dataset}-{time.strftime('%Y%m%d-%H%M%S')}"
    if Path(name).name != name or name in (".", ".."):
        raise ValueError(f"--name must be one folder name (no path separators), got {name!r}; "
                         "choose where runs go with --runs-dir")
    out = (runs_dir / name).expanduser().resolve()
    try:
        exists = out.exists()
    except OSError as exc:  # a name longer than the file system allows
        raise ValueError(f"cannot use run folder {out}: {exc.strerror or exc}; pick a shorter --name") from None
    if exists:
        raise FileExistsError(f"run folder {out} already exists; pick another --name (runs are never overwritten), "
                              f"or continue it with --resume {out}")
    return out


def _make_run_dir(out: Path) -> None:
    """Create a new run's folder; ValueError saying what to change when it cannot be (read-only, name too long)."""
    try:
        out.mkdir(parents=True)
    except FileExistsError:
        raise FileExistsError(f"run folder {out} was just created by another run; pick another --name") from None
    except OSError as exc:
        raise ValueError(f"cannot create run folder {out}: {exc.strerror or exc}; pick a writable --runs-dir "
                         "or a shorter --name") from None


def _check_resume_args(args: argparse.Namespace, ap: argparse.ArgumentParser) -> Path:
    """The run folder of ``--resume``, refusing options that would change the run's parameters."""
    given = [f"--{k.replace('_', '-')}" for k in RUN_OPTIONS if getattr(args, k) != ap.get_default(k)]
    if given:
        raise ValueError(f"--resume continues a run with the parameters it started with; drop {', '.join(given)} "
                         "(or start a new run with them)")
    out = Path(args.resume).expanduser().resolve()
    try:
        is_dir = out.is_dir()
    except OSError as exc:  # a path component longer than the file system allows
        raise ValueError(f"--resume {args.resume}: {exc.strerror or exc}; pass the folder a run printed "
                         "('run folder: ...')") from None
    if not is_dir:
        what = "is a file, not a run folder" if out.exists() else "no such run folder"
        raise ValueError(f"--resume {out}: {what}; pass the folder a run printed ('run folder: ...')")
    read_manifest(out)  # a folder that is no run is refused before its lock file is created
    return out


def _user_params(config: str | None, pairs: Sequence[Sequence[str]]) -> dict[str, Any]:
    """Parameters from a flat YAML file, then ``-p key value`` pairs (:func:`_scalar`)."""
    params: dict[str, Any] = {}
    if config:
        try:
            text = Path(config).read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"--config {config}: cannot read it ({exc}); give a YAML file of notebook parameters") from exc
        try:
            loaded = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise ValueError(f"--config {config} is not valid YAML ({_yaml_problem(exc)}); write one key: value "
                             "per line") from None
        if (not isinstance(loaded, dict) or any(isinstance(v, (dict, list)) for v in loaded.values())
                or any(not isinstance(k, str) for k in loaded)):
            raise ValueError(f"{config} must be a flat YAML mapping of notebook parameters (key: value)")
        params.update(loaded)
    for key, value in pairs:
        params[key] = _scalar(value)
    return params


def _scalar(value: str) -> Any:
    """A -p value: a number, bool or null as YAML reads it, a quoted YAML string unquoted, any other text as written.

    YAML alone would cut a path at `` #`` (a comment), read ``a: b`` as a mapping or fail on ``[``.
    """
    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError:
        return value
    if isinstance(parsed, str) and value[:1] in ("'", '"'):
        return parsed
    return value if isinstance(parsed, (str, dict, list)) else parsed


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """PyYAML's error in one line: what is wrong and where (its own message spans several lines)."""
    mark = getattr(exc, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"{getattr(exc, 'problem', None) or exc}{where}"


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    ap = argparse.ArgumentParser(
        prog="python -m mnadlib.reproduce", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Reproduce MNAD's results: runs notebooks/01_prepare_data -> 02_train (once per variant) -> "
                    "03_reproduce_auc -> 05_result_figures with papermill into runs/<name>/, prints the results table, "
                    "and exits with status 1 when a notebook's claim (assert) fails.",
        epilog="Defaults: synthped small generated into the run folder, cpu preset, three variants "
               f"({', '.join(VARIANTS)}); 03 asserts frame AUC >= {CLAIM_AUC} on synthped. "
               "Parameters are those of the notebooks' parameters cells (papermill --help-notebook "
               "notebooks/02_train.ipynb lists them), e.g. -p epochs 4 -p device cuda -p preset paper.")
    ap.add_argument("--name", help="run folder name under --runs-dir (default: <dataset>-<timestamp>); must not exist")
    ap.add_argument("--runs-dir", default="runs", help="where run folders go (default: ./runs)")
    ap.add_argument("--config", help="flat YAML file of notebook parameters (key: value); -p overrides it")
    ap.add_argument("-p", "--param", nargs=2, action="append", default=[], metavar=("KEY", "VALUE"),
                    help="a notebook parameter; VALUE is a number (1e-3 too), true/false or null as YAML reads it, else "
                         "text as written (quote text that looks like a number: \"'02'\"); repeatable")
    ap.add_argument("--smoke", action="store_true",
                    help=f"CI mode: tiny training ({SMOKE['epochs']} epoch of {SMOKE['max_steps']} steps), no AUC claim")
    ap.add_argument("--dataset", default="synthped",
                    help="dataset folder name: synthped (default, generated in the run folder), ped2, avenue, "
                         "shanghai, or your own (e.g. one written by `python -m mnadlib inject`)")
    ap.add_argument("--data-root", help="folder holding <dataset>/ and frame_labels_<dataset>.npy (needed for real datasets)")
    ap.add_argument("--variants", default=",".join(VARIANTS),
                    help=f"comma-separated variants that 02 trains (default {','.join(VARIANTS)}); the main one is <method>_mem")
    ap.add_argument("--resume", metavar="RUN_DIR",
                    help="continue an interrupted or failed run in its folder, with the parameters it started with: "
                         "finished notebooks are skipped, training continues from its last checkpoint")
    return ap


def _new_run(args: argparse.Namespace, argv: Sequence[str] | None) -> tuple[Path, list, dict[str, Any]]:
    """Validate the options of a new run; return its (not yet created) folder, its steps and its log."""
    user = checked_params(_user_params(args.config, args.param), declared_params())
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    bad = [v for v in variants if v not in VARIANTS]
    if bad:
        raise ValueError(f"unknown variant(s) {bad}; choose from {list(VARIANTS)}")
    if isinstance(user.get("device"), str):  # an unavailable device is refused before 01 writes anything
        from .train import resolve_device

        resolve_device(user["device"])
    if user.get("method", "pred") not in ("pred", "recon"):
        raise ValueError(f"-p method must be pred or recon, got {user['method']!r}")
    check_values(user)
    if user.get("footage") and args.dataset == "synthped":
        raise ValueError("synthped is generated, not injected: give the footage a dataset name of its own, "
                         "e.g. --dataset mycam -p footage VIDEO")
    if f"{user.get('method', 'pred')}_mem" not in variants:
        raise ValueError(f"--variants must include {user.get('method', 'pred')}_mem, the main model 03 evaluates")
    if not args.dataset or Path(args.dataset).name != args.dataset or args.dataset in (".", ".."):
        raise ValueError(f"--dataset must be a folder name under --data-root, got {args.dataset!r}")
    if user.get("footage"):  # the notebooks run in the run folder: make the video's path absolute
        user["footage"] = str(Path(str(user["footage"])).expanduser().resolve())
        if not Path(user["footage"]).exists():
            raise ValueError(f"footage {user['footage']} does not exist")
        _check_footage(user)
    if args.dataset != "synthped" and not args.data_root and not user.get("footage"):
        raise ValueError(f"--dataset {args.dataset} needs --data-root (the folder holding {args.dataset}/), "
                         "or -p footage VIDEO to inject anomalies into a video of a normal scene")
    data_root = Path(args.data_root).expanduser().resolve() if args.data_root else None
    if data_root is not None and not data_root.is_dir():
        raise ValueError(f"--data-root {data_root} does not exist")
    if known_dataset(args.dataset) and user.get("preset", "cpu") != "paper":
        print(f"note: --dataset {args.dataset} with the cpu preset (64 x 64 frames, a quarter of the paper's channels, "
              "24 epochs) is a quick look whose AUC does not compare with the paper's Table 1; -p preset paper trains "
              "at the paper's settings (a GPU's job, README: Results)", file=sys.stderr)
    out = _fresh_dir(Path(args.runs_dir), args.name, args.dataset)
    steps = plan(args.dataset, data_root, out, user, args.smoke, variants)
    log: dict[str, Any] = {"command": _command(argv), "python": sys.executable, "versions": _versions(),
                           "git_commit": git_commit(), "smoke": args.smoke, "dataset": args.dataset,
                           "data_root": None if data_root is None else str(data_root), "variants": variants,
                           "parameters": user, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "steps": []}
    return out, steps, log


def _command(argv: Sequence[str] | None) -> list[str]:
    """The command line that ran, for the manifest."""
    return [sys.executable, "-m", "mnadlib.reproduce", *(argv if argv is not None else sys.argv[1:])]


def _continue(out: Path, argv: Sequence[str] | None) -> tuple[list, dict[str, Any]]:
    """The steps and log of the run in ``out``, with this attempt recorded in the log."""
    log = read_manifest(out)
    data_root = Path(log["data_root"]) if log.get("data_root") else None
    versions = log.get("versions")
    started: dict[str, Any] = versions if isinstance(versions, dict) else {}
    try:
        unknown = [v for v in log["variants"] if v not in VARIANTS]
        if unknown:
            raise ValueError(f"unknown variant(s) {unknown}")
        steps = plan(log["dataset"], data_root, out, log["parameters"], log["smoke"], log["variants"])
    except ValueError as exc:
        raise ValueError(f"{out / MANIFEST} (made by mnadlib {started.get('mnadlib') or 'of an unknown version'}) holds "
                         f"settings that mnadlib {__version__} refuses ({exc}); the run cannot be continued, start a new "
                         "one") from None
    commit = git_commit()
    if log.get("status") != "ok":  # a finished run re-runs nothing, so nothing can differ
        if commit != log.get("git_commit"):
            print(f"warning: this run started at git commit {log.get('git_commit')} and continues at {commit}; "
                  "its notebooks may differ between the two attempts", file=sys.stderr)
        changed = [f"{k} {started[k]} -> {v}" for k, v in _versions().items()
                   if k != "platform" and k in started and started[k] != v]  # an older run recorded fewer
        if changed:
            print(f"warning: this run started with other versions ({', '.join(changed)}); its numbers may differ from "
                  "those of an uninterrupted run", file=sys.stderr)
        if replanned := _replanned(log["steps"], steps):
            print(f"warning: this mnadlib gives notebooks other parameters than the run's earlier attempt did "
                  f"({replanned}); notebooks run again or for the first time get the new ones", file=sys.stderr)
    log.setdefault("resumed", []).append({"command": _command(argv), "git_commit": commit, "after": log.get("status"),
                                          "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    return steps, log


def _replanned(logged: Sequence[dict[str, Any]], steps: Sequence[tuple[str, str, dict[str, Any]]]) -> str:
    """The parameters that differ between a step's latest logged attempt and its plan now ("" when none do).

    The run folder's own paths (out_dir, checkpoint) are left out: they change when a run folder is moved.
    """
    before = {s["notebook"]: s.get("parameters") for s in logged if isinstance(s.get("parameters"), dict)}
    moved = ("out_dir", "checkpoint")
    changes = []
    for run, _, params in steps:
        old, new = before.get(run), json.loads(json.dumps(params))
        if old is None:
            continue
        changes += [f"{run} {k}: {old.get(k, '(unset)')!r} -> {new.get(k, '(unset)')!r}"
                    for k in sorted(set(old) | set(new)) if k not in moved and old.get(k) != new.get(k)]
    return "; ".join(changes)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: 0 when every notebook ran and every claim held, 1 when one failed, 2 on bad arguments,
    130 on Ctrl-C, 143 on SIGTERM (both leave a run that --resume continues)."""
    with _sigterm_unwinds():
        return _main(argv)


def _main(argv: Sequence[str] | None) -> int:
    """main() without its SIGTERM handler."""
    ap = build_parser()
    args = ap.parse_args(argv)
    t0 = time.time()
    out: Path | None = None
    made: Path | None = None  # the folder of a new run, once this process created it: it may remove it again
    try:
        if args.resume:
            out = _check_resume_args(args, ap)
        else:
            out, steps, log = _new_run(args, argv)
            _make_run_dir(out)
            made = out
        with hold(out):
            if args.resume:
                if removed := sweep(out):
                    print(f"removed {len(removed)} temporary file(s) or folder(s) that a killed attempt left, "
                          f"e.g. {removed[0]}", flush=True)
                steps, log = _continue(out, argv)
                if log["resumed"][-1]["after"] == "ok":
                    print(summary(out) + f"\n\nrun folder: {out} (ok: finished earlier, nothing to resume)")
                    return 0
            return _run(steps, out, log, t0)
    except (ValueError, FileExistsError, FileNotFoundError, RunLocked) as exc:
        if made is not None and not (made / MANIFEST).is_file():
            _drop_unstarted(made)
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:  # before the first notebook, or a second Ctrl-C while the manifest was written
        what, code = _stopped(exc)
        if out is not None and (out / MANIFEST).is_file():
            print(f"\n{what}; continue with: python -m mnadlib.reproduce --resume {out}", file=sys.stderr)
        else:
            if made is not None:
                _drop_unstarted(made)
            print(f"\n{what} before the run started; nothing to resume", file=sys.stderr)
        return code


def _drop_unstarted(out: Path) -> None:
    """Remove a new run folder that holds no manifest yet (only its lock and empty notebooks/), so its --name stays free."""
    (out / LOCK).unlink(missing_ok=True)
    for folder in (out / "notebooks", out):
        try:
            folder.rmdir()
        except OSError:  # not empty (or gone): rmdir never removes anything written
            pass


def _run(steps: Sequence[tuple[str, str, dict[str, Any]]], out: Path, log: dict[str, Any], t0: float) -> int:
    """Execute the steps, keep the manifest current, print the results table; the exit status.

    The table is printed after a missed claim too (03 wrote it before its assert). The manifest's
    ``wall_s`` adds up the attempts of the run that recorded their end, ``attempt_wall_s`` is this one's.
    """
    log["status"] = "running"
    earlier = float(log.get("wall_s") or 0.0)
    status, table = 0, False
    try:
        execute(steps, out, log)
    except PipelineError as exc:
        print(f"error: {exc}\n{next_step(exc, out)}", file=sys.stderr)
        status, table = 1, claim_missed(exc)
    except OSError as exc:  # the manifest could not be written (a full disk): the step it records is run again
        print(f"error: {exc}\n{next_step(PipelineError(str(exc)), out)}", file=sys.stderr)
        status = 1
    except KeyboardInterrupt as exc:
        what, status = _stopped(exc)
        print(f"\n{what}; continue with: python -m mnadlib.reproduce --resume {out}", file=sys.stderr)
    this = round(time.time() - t0, 1)
    log.update(status={0: "ok", 1: "failed"}.get(status, "interrupted"), attempt_wall_s=this,
               wall_s=round(earlier + this, 1))
    try:
        write_manifest(out, log)
    except OSError as exc:  # its last written state is what --resume continues from; a failure above said so already
        if status == 0:
            print(f"error: {exc}\n{next_step(PipelineError(str(exc)), out)}", file=sys.stderr)
        status = status or 1
    if status == 0 or table:
        try:
            print("\n" + summary(out))
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            status = 1
    took = f"{this:.0f} s" + (f"; {earlier + this:.0f} s with the earlier attempts" if earlier else "")
    print(f"\nrun folder: {out} ({log['status']}, {took})")
    return status


if __name__ == "__main__":
    sys.exit(main())
