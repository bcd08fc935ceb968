"""Every bad input the zoo can be given, as a table: each row a ``zoo`` command that must exit with
code 2 and one line on stderr naming the problem (and, checked by the expected fragment, the fix),
no traceback, and nothing left behind (no run, project or output directory).

One row of each command (``real=True``) runs as its own ``python -m zoo`` process; the others run
one after another in one process through ``zoo.cli.main`` (what ``python -m zoo`` calls), with file
descriptors 1 and 2 captured per row, so even C libraries' output counts as a stray line. That
keeps the table at a few TensorFlow imports.

A full disk (ENOSPC while a checkpoint is written) is the last test: one line naming the file and
the space, exit code 1, and the same command then resumes and completes.
"""
from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import tarfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
import yaml

from helpers import tiny_npz, tiny_recipe

REPO = Path(__file__).resolve().parent.parent
PARALLEL = 2  # processes at once: the TensorFlow import dominates each one's time


class Row(NamedTuple):
    name: str
    argv: tuple[str, ...]  # after `zoo`; {in} is the inputs folder, {out} this row's output path
    expect: str  # a fragment of the one-line message (the problem and, where it says it, the fix)
    real: bool = False  # its own `python -m zoo` process (one row per command at least)
    env: tuple[tuple[str, str], ...] = ()  # only with real=True


class Outcome(NamedTuple):
    code: int | None
    stdout: str
    stderr: str


def train(*overrides: str) -> tuple[str, ...]:
    return ("train", "embedded", "train.progress=none", *overrides, "--run-dir", "{out}")


ROWS = [
    Row("missing-source", train("data.source={in}/nowhere"), "does not exist; expected an image folder"),
    Row("empty-folder", train("data.source={in}/empty"), "has no image files; expected layout"),
    Row("corrupt-jpeg-folder", train("data.source={in}/corrupt"), "none of the 8 image files", real=True),
    Row("corrupt-jpeg-tar", train("data.source={in}/corrupt.tar"), "could be decoded (corrupt, truncated or not"),
    Row("a-class-all-corrupt", train("data.source={in}/half_corrupt", "data.validation=2", "data.batch_size=2"),
        "class folder(s) 'b' of"),
    Row("mixed-image-sizes", train("data.source={in}/mixed", "data.validation=2", "data.batch_size=2"),
        "differ in size (a/0.png is 8x8, b/0.png is 12x8, 4 differ in all); pass data.image_size=N"),
    Row("npz-wrong-keys", train("data.source={in}/wrong_keys.npz"),
        "has arrays ['images', 'labels']; data.split='train' needs x/y or x_train/y_train: save"),
    Row("npz-wrong-shape", train("data.source={in}/wrong_shape.npz"), "got (64, 8); save x as one array"),
    Row("label-count-mismatch", train("data.source={in}/label_count.npz"), "got 64 images but 50 labels; give one"),
    Row("float-images-out-of-range", train("data.source={in}/float_bad.npz"),
        "neither 0..255 pixel values nor floats in 0..1; rescale x"),
    Row("validation-larger-than-data", train("data.source={in}/good.npz", "data.validation=100"),
        "data.validation=100 examples must be >= 0 and smaller than the 64 examples available; hold out fewer"),
    Row("one-class", train("data.source={in}/one_class.npz", "data.validation=8"), "1 class found"),
    Row("less-than-one-batch", train("data.source={in}/good.npz", "data.validation=8", "data.batch_size=1000"),
        "make no full batch of data.batch_size=1000"),
    Row("run-dir-under-a-file", ("train", "embedded", "--run-dir", "{in}/a_file/run"), "is a file, not a folder"),
    Row("init-weights-truncated-keras", train("train.init_weights={in}/truncated.keras"),
        "train.init_weights: {in}/truncated.keras is not a readable .keras file (truncated"),
    Row("init-weights-truncated-h5", train("train.init_weights={in}/truncated.weights.h5"),
        "is not a readable Keras .weights.h5 file (truncated or not HDF5"),
    Row("init-weights-of-another-model", train("train.init_weights={in}/whole.weights.h5"),
        "train.init_weights: {in}/whole.weights.h5 does not fit resnet20_inference ("),
    Row("teacher-refused-by-safe-mode", train("train.teachers=[{in}/lambda.keras]"),
        "train.teachers: {in}/lambda.keras is refused by Keras safe mode: layer 'lambda' (a Python lambda)"),
    Row("eval-truncated-model-keras", ("eval", "{in}/truncated.keras", "--recipe", "embedded", "--output-dir", "{out}"),
        "{in}/truncated.keras is not a readable .keras file", real=True),
    Row("eval-refused-by-safe-mode", ("eval", "{in}/lambda.keras", "--recipe", "embedded", "--output-dir", "{out}"),
        "{in}/lambda.keras is refused by Keras safe mode"),
    Row("eval-weights-of-another-model", ("eval", "{in}/whole.weights.h5", "--recipe", "{in}/tiny.yaml",
                                          "--output-dir", "{out}"),
        "{in}/whole.weights.h5 does not fit resnet20 of recipe 'tiny' ("),
    Row("convert-keras-refused-by-safe-mode",
        ("convert", "keras", "resnet50", "{in}/lambda.keras", "{out}/r.weights.h5"),
        "{in}/lambda.keras is refused by Keras safe mode: layer 'lambda' (a Python lambda) would run code stored in "
        "the file; the zoo loads .keras files in safe mode only and has no switch to turn it off: rebuild", real=True),
    Row("convert-keras-truncated", ("convert", "keras", "resnet50", "{in}/truncated.keras", "{out}/r.weights.h5"),
        "{in}/truncated.keras is not a readable .keras file"),
    Row("convert-empty-pth", ("convert", "torchvision", "resnet18", "{in}/empty.pth", "{out}/r.weights.h5"),
        "{in}/empty.pth is empty (0 bytes): its download or copy did not finish; fetch the checkpoint again"),
    Row("keras-home-is-a-file", train(), "KERAS_HOME={in}/a_file: {in}/a_file is a file, not a folder; point",
        real=True, env=(("KERAS_HOME", "{in}/a_file"),)),
    Row("tune-mixed-image-sizes", ("tune", "embedded", "data.source={in}/mixed", "data.validation=2",
                                   "data.batch_size=2", "--max-trials", "1", "--project-dir", "{out}"),
        "pass data.image_size=N", real=True),
]


# ----------------------------------------------------------------------------------- inputs
def png(height: int, width: int, seed: int) -> bytes:
    import tensorflow as tf

    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return tf.io.encode_png(pixels).numpy()


def image_folder(root: Path, images: dict[str, list[bytes]], suffix: str) -> Path:
    for cls, files in images.items():
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i, data in enumerate(files):
            (root / cls / f"{i}{suffix}").write_bytes(data)
    return root


def keras_files(root: Path) -> None:
    """A model with a Lambda layer (safe mode refuses it) and a plain one, cut in half."""
    import keras

    inputs = keras.Input((8, 8, 3))
    scaled = keras.layers.Lambda(lambda t: t / 255.0, name="lambda")(inputs)
    keras.Model(inputs, keras.layers.Dense(2)(scaled)).save(root / "lambda.keras")
    plain = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    plain.save(root / "whole.keras")
    plain.save_weights(root / "whole.weights.h5")
    for name in ("whole.keras", "whole.weights.h5"):
        data = (root / name).read_bytes()
        (root / name.replace("whole", "truncated")).write_bytes(data[: len(data) // 2])


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bad_inputs")
    (root / "empty").mkdir()
    (root / "a_file").write_text("not a folder")
    (root / "empty.pth").write_bytes(b"")
    not_jpeg = [b"\xff\xd8\xff\xe0 cut short"] * 4
    image_folder(root / "corrupt", {"a": not_jpeg, "b": not_jpeg}, ".jpg")
    with tarfile.open(root / "corrupt.tar", "w") as tar:
        tar.add(root / "corrupt", arcname="corrupt")
    image_folder(root / "half_corrupt", {"a": [png(8, 8, i) for i in range(4)], "b": not_jpeg}, ".png")
    sizes = {"a": [png(8, 8, i) for i in range(4)], "b": [png(12, 8, i) for i in range(4)]}
    image_folder(root / "mixed", sizes, ".png")
    x = np.random.default_rng(0).integers(0, 256, (64, 8, 8, 3)).astype("uint8")
    y = np.arange(64) % 2
    np.savez(root / "good.npz", x=x, y=y)
    np.savez(root / "wrong_keys.npz", images=x, labels=y)
    np.savez(root / "wrong_shape.npz", x=x[:, :, 0, 0], y=y)
    np.savez(root / "label_count.npz", x=x, y=y[:50])
    np.savez(root / "float_bad.npz", x=x.astype("float32") - 300, y=y)
    np.savez(root / "one_class.npz", x=x, y=np.zeros(64, "int32"))
    (root / "tiny.yaml").write_text(yaml.safe_dump(tiny_recipe(root / "good.npz")))
    keras_files(root)
    return root


def environment(tmp: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "KERAS_HOME": str(tmp / "keras_home"), "ZOO_OFFLINE": "1",
           "ZOO_CACHE": str(tmp / "cache"), "ZOO_DEVICE_POLICY": "static"}
    return {**env, **(extra or {})}


def zoo(argv: list[str], env: dict[str, str], timeout: int = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "zoo", *argv], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


# rows [name, argv] from argv[1] -> {name: [exit code, stdout, stderr]} into argv[2]
DRIVER = """
import json, os, sys, tempfile, traceback
from zoo.cli import main
results = {}
for name, argv in json.load(open(sys.argv[1])):
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        saved = os.dup(1), os.dup(2)
        os.dup2(out.fileno(), 1), os.dup2(err.fileno(), 2)
        try:
            code = main(argv)
        except SystemExit as stop:
            code = stop.code
        except BaseException:
            traceback.print_exc()
            code = None
        finally:
            sys.stdout.flush(), sys.stderr.flush()
            os.dup2(saved[0], 1), os.dup2(saved[1], 2), os.close(saved[0]), os.close(saved[1])
        out.seek(0), err.seek(0)
        results[name] = [code, out.read().decode(errors="replace"), err.read().decode(errors="replace")]
json.dump(results, open(sys.argv[2], "w"))
"""


@pytest.fixture(scope="module")
def outcomes(inputs, tmp_path_factory) -> dict[str, tuple[Row, Path, Outcome]]:
    """Every row's outcome: the real rows' processes and the one process of the others, two at a time."""
    tmp = tmp_path_factory.mktemp("bad_input_runs")

    def fill(text: str, row: Row) -> str:
        return text.replace("{in}", str(inputs)).replace("{out}", str(tmp / "out" / row.name))

    def real(row: Row) -> dict[str, Outcome]:
        proc = zoo([fill(a, row) for a in row.argv], environment(tmp, {k: fill(v, row) for k, v in row.env}))
        return {row.name: Outcome(proc.returncode, proc.stdout, proc.stderr)}

    def together(rows: list[Row]) -> dict[str, Outcome]:
        todo, done = tmp / "rows.json", tmp / "outcomes.json"
        todo.write_text(json.dumps([[row.name, [fill(a, row) for a in row.argv]] for row in rows]))
        proc = subprocess.run([sys.executable, "-c", DRIVER, str(todo), str(done)], cwd=REPO, env=environment(tmp),
                              capture_output=True, text=True, timeout=400, check=False)
        assert proc.returncode == 0 and done.exists(), proc.stderr[-3000:]
        return {name: Outcome(*values) for name, values in json.loads(done.read_text()).items()}

    jobs = [lambda: together([r for r in ROWS if not r.real]), *[lambda r=r: real(r) for r in ROWS if r.real]]
    found: dict[str, Outcome] = {}
    with ThreadPoolExecutor(PARALLEL) as pool:
        for part in pool.map(lambda job: job(), jobs):
            found.update(part)
    return {row.name: (row._replace(expect=fill(row.expect, row)), tmp / "out" / row.name, found[row.name])
            for row in ROWS}


@pytest.mark.parametrize("name", [row.name for row in ROWS])
def test_bad_input_is_refused_in_one_line(outcomes, inputs, name):
    row, out, proc = outcomes[name]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    shown = f"exit {proc.code}\nstdout:\n{proc.stdout[-1500:]}\nstderr:\n{proc.stderr[-3000:]}"
    assert "Traceback" not in proc.stdout + proc.stderr, shown
    assert proc.code == 2, shown
    assert len(lines) == 1 and lines[0].startswith(f"zoo {row.argv[0]}: error: "), shown
    assert row.expect in lines[0], shown
    assert not out.exists(), f"{out} was left behind: {sorted(p.name for p in out.rglob('*'))}"
    left = [p.name for p in inputs.rglob("*") if p.name.startswith(("eval_report", ".tmp"))]
    assert not left, left


# ------------------------------------------------------------------------------ a full disk
# the second write of the run state (epoch 2) finds the disk full; the real writer otherwise
FULL_DISK_DRIVER = """
import errno, os, sys
real, hits = os.replace, []
def replace(src, dst, *args, **kwargs):
    if os.path.basename(dst) == "last.weights.h5":
        hits.append(dst)
        if len(hits) == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(dst))
    return real(src, dst, *args, **kwargs)
os.replace = replace
from zoo.cli import main
sys.exit(main(sys.argv[1:]))
"""


def tiny_folder(root: Path, count: int) -> Path:
    """:func:`helpers.tiny_npz`'s images as PNG files in class folders, and one corrupt JPEG."""
    import tensorflow as tf

    with np.load(tiny_npz(root.with_suffix(".npz"), count)) as arrays:
        for i, (image, label) in enumerate(zip(arrays["x"], arrays["y"])):
            (root / f"c{label}").mkdir(parents=True, exist_ok=True)
            (root / f"c{label}" / f"{i:03d}.png").write_bytes(tf.io.encode_png(image).numpy())
    (root / "c1" / "cut.jpg").write_bytes(b"\xff\xd8\xff\xe0 cut short")
    return root


def test_a_full_disk_stops_in_one_line_and_the_same_command_resumes(tmp_path, monkeypatch, capsys):
    """Also: the corrupt image skipped is said in the run's log and counted in report.json."""
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(yaml.safe_dump(tiny_recipe(tiny_folder(tmp_path / "images", 96), epochs=2)))
    run = tmp_path / "run"
    argv, env = ["train", str(recipe), "--run-dir", str(run)], environment(tmp_path)
    full = subprocess.run([sys.executable, "-c", FULL_DISK_DRIVER, *argv], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=240, check=False)
    lines = [line for line in full.stderr.splitlines() if line.strip()]
    shown = f"exit {full.returncode}\nstdout:\n{full.stdout[-1500:]}\nstderr:\n{full.stderr[-3000:]}"
    assert "Traceback" not in full.stdout + full.stderr and full.returncode == 1, shown
    state = run / "checkpoints" / "last.weights.h5"
    assert len(lines) == 1, shown
    assert lines[0].startswith(f"zoo train: error: no space left on the device to write {state}: "), shown
    assert " free there, about " in lines[0] and "needed (the size of the file it replaces)" in lines[0], shown
    assert lines[0].endswith("run the same command again (a run resumes after its last finished epoch)."), shown
    assert not (run / "report.json").exists() and not list((run / "checkpoints").glob(".tmp-*"))
    assert "skipped 1 corrupt or unreadable image file(s): c1/cut.jpg" in full.stdout, full.stdout

    # the same command in a process of its own (no full disk now; an in-process run would turn on
    # TensorFlow op determinism for the rest of the test session)
    rerun = subprocess.run([sys.executable, "-m", "zoo", *argv], cwd=REPO, env=env, capture_output=True, text=True,
                           timeout=240, check=False)
    assert rerun.returncode == 0, rerun.stdout[-1500:] + rerun.stderr[-3000:]
    out = rerun.stdout
    assert "resuming at epoch 2" in out and "skipped 1 corrupt" in out, out
    report = json.loads((run / "report.json").read_text())
    assert report["status"] == "completed" and [r["epoch"] for r in report["history"]] == [1, 2]
    assert report["data"]["skipped_files"] == 1 and report["data"]["num_train"] + report["data"]["num_validation"] == 96


def test_a_full_disk_mid_write_frees_the_partial_file_and_names_the_space(tmp_path, monkeypatch):
    """As h5py does: the writer keeps the temporary file open when the disk fills (its file object
    lives on in the traceback and flushes when freed, which crashed on a disk still full), so the
    partial file is cut to nothing, not just unlinked; the message gives what it had written."""
    from zoo import report as zr

    target = tmp_path / "checkpoints" / "last.weights.h5"
    with pytest.raises(zr.DiskFullError) as caught:
        with zr.atomic_path(target) as tmp:
            held = open(tmp, "wb")
            held.write(b"x" * 3000)
            held.flush()
            raise RuntimeError("Unable to synchronously flush file (file write failed: ..., errno = 28, error "
                               "message = 'No space left on device', ...)")
    assert os.fstat(held.fileno()).st_size == 0 and not tmp.exists()
    held.close()
    assert caught.value.errno == errno.ENOSPC and not target.exists()
    message = str(caught.value)
    assert f"to write {target}: " in message and "more than 2.9 KB needed (it ran out there)" in message

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(zr.os, "fsync", no_space)
    with pytest.raises(zr.DiskFullError, match=r"report.json: .* free there, 12 B needed; free some space"):
        zr.write_text(tmp_path / "report.json", "{\"a\": 1}\n" + "   ")
    assert not list(tmp_path.glob(".report.json.*"))
    with pytest.raises(OSError) as other:  # any other error is left as it is
        with zr.atomic_path(target):
            raise OSError(errno.EACCES, "denied")
    assert not isinstance(other.value, zr.DiskFullError) and other.value.errno == errno.EACCES
