"""``--ray``: the same job on a local Ray instance (2 CPUs, started by this module and stopped after it), with
the real int8 YOLOv8n detector and the trained Ultralight pose network.

- On every image of ../shared/data, and on a folder of three clips made from them, ``--ray --no-save --json
  --csv`` (and ``--parquet`` for the images) writes the files a single-process run writes, with the same
  boxes and keypoints (to 1e-4 px).
- A long video split into segments (``--no-track``) keeps the whole file's frame indices and timestamps.
- A worker killed mid-task (SIGKILL of the process writing a shard) is retried by Ray: the outputs are
  complete, nothing is written twice, and the summary counts the retry.
- ``--resume`` after a run stopped half-way (SIGTERM to the driver) runs only the tasks that were not done.
- A Ctrl-C or SIGTERM in a program's own Ray ends the run at once and no task begins after it.
- Planning (tasks, digests, segments, the pool's shape) and the one-line errors, without Ray.
"""
from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import ray
from click.testing import CliRunner

from conftest import DATA, DETECTOR, ROOT, SHARED, needs_shared
from fixtures.clips import make_clip

ULTRALIGHT = SHARED / "weights" / "ultralight-nano-simplepose-coco-256x192.onnx"
ARCH = "res50_coco-256x192"
MODEL = ["--pose-model", str(ULTRALIGHT), "--pose-arch", ARCH, "--det-model", str(DETECTOR),
         "--backend", "onnxruntime"]
shared = [needs_shared, pytest.mark.skipif(not ULTRALIGHT.is_file(), reason=f"{ULTRALIGHT} is not here")]


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray instance of 2 CPUs for the module (the runs use it instead of starting their own)."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False,
             runtime_env={"env_vars": {"POSEAPP_HOME": os.environ.get("POSEAPP_HOME", str(ROOT / "weights"))}})
    yield
    ray.shutdown()


def predict(*args: str) -> str:
    from poseapp.cli import main

    result = CliRunner().invoke(main, [*MODEL, "--no-save", "--exist-ok", *map(str, args)])
    assert result.exit_code == 0, result.output
    return result.output


def lines_of(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def assert_same_instances(a: list[dict], b: list[dict]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_allclose(x["bbox"], y["bbox"], atol=1e-4)
        np.testing.assert_allclose(x["keypoints"], y["keypoints"], atol=1e-4)
        np.testing.assert_allclose(x["keypoint_scores"], y["keypoint_scores"], atol=1e-4)
        assert x.get("track_id") == y.get("track_id")


def assert_same_video(single: Path, distributed: Path) -> None:
    """Two JSON Lines files of one video: the same header, frames, timestamps, IDs and keypoints (1e-4)."""
    a, b = lines_of(single), lines_of(distributed)
    assert a[0] == b[0] and len(a) == len(b) > 1
    for x, y in zip(a[1:], b[1:]):
        assert (x["frame"], x["timestamp"], x["source"]) == (y["frame"], y["timestamp"], y["source"])
        assert_same_instances(x["instances"], y["instances"])


@pytest.fixture(scope="module")
def image_list(tmp_path_factory) -> Path:
    """A .txt list of every image of ../shared/data (all its data sets: people, animals, faces, clothes)."""
    images = sorted(p for p in DATA.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    assert len(images) >= 30
    path = tmp_path_factory.mktemp("list") / "images.txt"
    path.write_text("".join(f"{p}\n" for p in images))
    return path


@pytest.fixture(scope="module")
def video_folder(tmp_path_factory) -> Path:
    """Three short clips of real COCO people over a real background, in one folder."""
    folder = tmp_path_factory.mktemp("videos")
    for kind, frames in (("crossing", 30), ("walking", 24), ("group", 24)):
        make_clip(folder / f"{kind}.avi", kind, frames=frames)
    return folder


@pytest.fixture(scope="module")
def single_videos(video_folder, tmp_path_factory) -> Path:
    """Each clip of the folder through a single-process run, into one folder."""
    out = tmp_path_factory.mktemp("single_videos")
    for clip in sorted(video_folder.glob("*.avi")):
        predict("--source", clip, "--json", "--csv", "--out", out)
    return out


pytestmark = [*shared]


# ------------------------------------------------------------------------------------------- same outputs


def test_images_give_the_single_process_files(local_ray, image_list, tmp_path):
    predict("--source", image_list, "--json", "--csv", "--parquet", "--out", tmp_path / "single")
    output = predict("--source", image_list, "--json", "--csv", "--parquet", "--out", tmp_path / "ray", "--ray",
                     "--workers", 2, "--shard-size", 8)
    single, distributed = (json.loads((tmp_path / d / "predictions.json").read_text()) for d in ("single", "ray"))
    assert {k: v for k, v in single.items() if k != "images"} == {k: v for k, v in distributed.items() if k != "images"}
    assert [i["image"] for i in single["images"]] == [i["image"] for i in distributed["images"]]
    assert len(single["images"]) >= 30 and sum(len(i["instances"]) for i in single["images"]) >= 30
    for a, b in zip(single["images"], distributed["images"]):
        assert (a["width"], a["height"]) == (b["width"], b["height"])
        assert_same_instances(a["instances"], b["instances"])
    rows = [list(csv.reader((tmp_path / d / "predictions.csv").open())) for d in ("single", "ray")]
    assert rows[0][0] == rows[1][0] and [r[:2] for r in rows[0]] == [r[:2] for r in rows[1]]
    import pyarrow.parquet as pq

    tables = [pq.read_table(tmp_path / d / "predictions.parquet") for d in ("single", "ray")]
    assert tables[0].schema == tables[1].schema and tables[0].num_rows == len(rows[0]) - 1
    assert tables[0].column("source").to_pylist() == tables[1].column("source").to_pylist()
    np.testing.assert_allclose(np.array(tables[0].column("keypoints").to_pylist()),
                               np.array(tables[1].column("keypoints").to_pylist()), atol=1e-4)
    first = next(i for i in distributed["images"] if i["instances"])  # the first row is its first instance
    assert tables[1].column("source")[0].as_py() == first["image"]
    np.testing.assert_allclose(tables[1].column("keypoints")[0].as_py(), first["instances"][0]["keypoints"], atol=1e-4)
    n = len(single["images"])
    tasks = -(-n // 8)
    assert re.search(rf"ray: {n} input\(s\): {n} done, 0 failed; {tasks} task\(s\) on 2 worker\(s\); none retried",
                     output), output
    manifest = json.loads((tmp_path / "ray" / "shards" / "manifest.json").read_text())
    assert [t["status"] for t in manifest["tasks"]] == ["done"] * tasks


def test_a_folder_of_videos_gives_each_video_its_single_process_files(local_ray, video_folder, single_videos,
                                                                        tmp_path):
    output = predict("--source", video_folder, "--json", "--csv", "--out", tmp_path, "--ray", "--workers", 2)
    for clip in sorted(video_folder.glob("*.avi")):
        assert_same_video(single_videos / f"{clip.stem}.jsonl", tmp_path / f"{clip.stem}.jsonl")
        assert (single_videos / f"{clip.stem}.csv").read_text().count("\n") == \
            (tmp_path / f"{clip.stem}.csv").read_text().count("\n")
    assert "ray: 3 input(s): 3 done, 0 failed; 3 task(s) on 2 worker(s)" in output
    ids = {i["track_id"] for line in lines_of(tmp_path / "crossing.jsonl")[1:] for i in line["instances"]
           if "track_id" in i}
    assert len(ids) == 3  # tracking ran over the whole video in one worker


def test_a_long_video_split_into_segments_keeps_its_frame_numbers_and_times(local_ray, tmp_path):
    clip = make_clip(tmp_path / "long.avi", "walking", frames=50)[0]
    predict("--source", clip, "--json", "--no-track", "--out", tmp_path / "single")
    output = predict("--source", clip, "--json", "--no-track", "--out", tmp_path / "ray", "--ray",
                     "--segment-frames", 12, "--vid-stride", 1)
    assert_same_video(tmp_path / "single" / "long.jsonl", tmp_path / "ray" / "long.jsonl")
    manifest = json.loads((tmp_path / "ray" / "shards" / "manifest.json").read_text())
    assert [(t["start"], t["stop"]) for t in manifest["tasks"]] == [(0, 12), (12, 24), (24, 36), (36, 48), (48, None)]
    assert "5 task(s)" in output


# ------------------------------------------------------------------------------------------- faults


def _kill_first_writer(shards: Path, killed: list[int], stop: threading.Event) -> None:
    """SIGKILL the worker process that is writing a shard (its pid is in the temporary file's name)."""
    while not stop.is_set():
        for name in os.listdir(shards) if shards.is_dir() else []:
            match = re.match(r"^\..*\.jsonl\.poseapp(\d+)-", name)
            if match and (shards / name).stat().st_size > 200:  # a few frames in: mid-task
                pid = int(match.group(1))
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                return
        time.sleep(0.05)


def test_a_worker_killed_mid_task_is_retried_and_nothing_is_lost_or_doubled(local_ray, video_folder, single_videos,
                                                                            tmp_path):
    killed: list[int] = []
    stop = threading.Event()
    watcher = threading.Thread(target=_kill_first_writer, args=(tmp_path / "shards", killed, stop), daemon=True)
    watcher.start()
    try:
        output = predict("--source", video_folder, "--json", "--csv", "--out", tmp_path, "--ray", "--workers", 2)
    finally:
        stop.set()
        watcher.join(5)
    assert len(killed) == 1
    for clip in sorted(video_folder.glob("*.avi")):
        assert_same_video(single_videos / f"{clip.stem}.jsonl", tmp_path / f"{clip.stem}.jsonl")
        frames = [line["frame"] for line in lines_of(tmp_path / f"{clip.stem}.jsonl")[1:]]
        assert frames == sorted(set(frames))  # each frame once
    assert "ray: 3 input(s): 3 done, 0 failed" in output and "1 retried by Ray" in output
    left = [p.name for p in tmp_path.rglob(".*") if p.is_file()]
    assert left == []  # the killed attempt's temporary shard was removed


def test_resume_after_an_interrupted_run_runs_only_what_was_missing(image_list, tmp_path):
    """A run in a subprocess (its own local Ray) stopped by SIGTERM once some tasks are done (143: Ray's own
    handler, set as it starts, is not left in its place); --resume then."""
    cmd = [sys.executable, str(ROOT / "infer.py"), "--source", str(image_list), *MODEL, "--no-save", "--json",
           "--out", str(tmp_path), "--exist-ok", "--ray", "--workers", "1", "--shard-size", "4"]
    run = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    shards = tmp_path / "shards"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and run.poll() is None:
        if shards.is_dir() and len(list(shards.glob("*.done.json"))) >= 2:
            break
        time.sleep(0.1)
    run.send_signal(signal.SIGTERM)
    first, _ = run.communicate(timeout=120)
    assert run.returncode == 143 and "terminated by SIGTERM: outputs written so far are saved" in first, first
    done = {p.name: p.stat().st_mtime_ns for p in shards.glob("*.done.json")}
    tasks = len(json.loads(shards.joinpath("manifest.json").read_text())["tasks"])
    assert 2 <= len(done) < tasks, first
    resumed = subprocess.run([*cmd, "--resume"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert f"{len(done)} done before (--resume)" in resumed.stderr
    assert f"{tasks} task(s)" in resumed.stderr
    assert {p.name: p.stat().st_mtime_ns for p in shards.glob("*.done.json") if p.name in done} == done
    assert len(list(shards.glob("*.done.json"))) == tasks
    images = json.loads((tmp_path / "predictions.json").read_text())["images"]
    listed = [line for line in image_list.read_text().splitlines() if line]
    assert [i["image"] for i in images] == listed


@pytest.mark.parametrize("sig,code,words", [(signal.SIGINT, 130, "interrupted"),
                                             (signal.SIGTERM, 143, "terminated by SIGTERM")], ids=["INT", "TERM"])
def test_a_signal_stops_the_pool_of_a_ray_the_run_did_not_start(local_ray, image_list, tmp_path, sig, code, words):
    """In a program's own Ray (here the module's), a Ctrl-C or SIGTERM ends the run at once (130, 143) and the
    pool stops: no task begins after it; the manifest says what is pending."""
    from poseapp.cli import main

    shards = tmp_path / "shards"

    def interrupt() -> None:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and len(list(shards.glob("*.done.json"))) < 2:
            time.sleep(0.05)
        signal.pthread_kill(threading.main_thread().ident, sig)  # to the main thread, where Python takes it

    previous = signal.signal(sig, lambda *_: None)  # one landing after the run is not pytest's
    try:
        sender = threading.Thread(target=interrupt, daemon=True)
        sender.start()
        result = CliRunner().invoke(main, [*MODEL, "--source", str(image_list), "--no-save", "--json", "--out",
                                           str(tmp_path), "--exist-ok", "--ray", "--workers", "1", "--shard-size", "4"])
        sender.join(5)
    finally:
        signal.signal(sig, previous)
    assert result.exit_code == code and f"{words}: outputs written so far are saved" in result.output
    time.sleep(6)  # the task in hand may end (~1 s); none after it
    done = len(list(shards.glob("*.done.json")))
    time.sleep(4)
    tasks = json.loads((shards / "manifest.json").read_text())["tasks"]
    assert len(list(shards.glob("*.done.json"))) == done < len(tasks) == 9
    assert "pending" in {t["status"] for t in tasks} <= {"done", "pending"}  # done: the rows the driver had


# ------------------------------------------------------------------------------------------- planning, errors


def test_segments_cover_the_video_and_the_last_one_runs_to_its_end():
    from poseapp.distributed.plan import segment_spans

    assert segment_spans(100, 1, 30) == [(0, 30), (30, 60), (60, 90), (90, None)]
    assert segment_spans(100, 2, 20) == [(0, 40), (40, 80), (80, None)]
    assert segment_spans(30, 1, 30) == [(0, None)] and segment_spans(None, 1, 30) == [(0, None)]


def test_the_digest_follows_what_changes_a_shard_and_not_where_it_runs(tmp_path):
    from poseapp import PredictOptions
    from poseapp.distributed.plan import options_digest

    base = PredictOptions(source="x", out_dir=tmp_path)
    same = [PredictOptions(source="y", out_dir=tmp_path / "b", threads=3, batch_size=4, backend="openvino")]
    other = [PredictOptions(source="x", det_conf=0.5), PredictOptions(source="x", flip_test=False),
             PredictOptions(source="x", pose_model="rtmpose-m_coco-256x192"), PredictOptions(source="x", save_csv=True),
             PredictOptions(source="x", precision="bf16")]
    assert all(options_digest(o) == options_digest(base) for o in same)
    assert len({options_digest(o) for o in [base, *other]}) == 1 + len(other)
    model = tmp_path / "m.onnx"
    model.write_bytes(b"1")
    before = options_digest(PredictOptions(source="x", pose_model=model))
    os.utime(model, ns=(1, 1))
    assert options_digest(PredictOptions(source="x", pose_model=model)) != before  # a changed file


def test_a_folder_of_videos_is_a_task_per_video_and_clashing_names_are_refused(tmp_path):
    from poseapp import PredictOptions
    from poseapp.distributed import plan_tasks
    from poseapp.errors import SourceError

    for name in ("b.mp4", "a.avi"):
        (tmp_path / name).write_bytes(b"")
    plan = plan_tasks(PredictOptions(source=tmp_path))
    assert plan.kind == "video" and [t.output for t in plan.tasks] == ["a", "b"]
    assert all(t.name.startswith(f"{t.output}.") for t in plan.tasks)
    (tmp_path / "a.mp4").write_bytes(b"")
    with pytest.raises(SourceError, match=r"videos '.*a\.avi' and '.*a\.mp4' would both write a\.jsonl"):
        plan_tasks(PredictOptions(source=tmp_path))


def test_image_tasks_are_shards_in_source_order():
    from poseapp import PredictOptions
    from poseapp.distributed import plan_tasks

    plan = plan_tasks(PredictOptions(source=str(DATA / "coco")), shard_size=3)
    assert [len(t.paths) for t in plan.tasks] == [3, 1] and [t.first_index for t in plan.tasks] == [0, 3]
    assert plan.tasks[0].name.startswith("images-000000-000002.") and plan.inputs == 4


def test_the_pool_shares_the_cpus_out_and_keeps_some_for_reading():
    from poseapp.distributed import RayOptions, pool_shape
    from poseapp.errors import PoseAppError

    assert pool_shape(RayOptions(workers=2), 2, 0, 10) == pool_shape(RayOptions(workers=2), 2, 0, 10)
    shape = pool_shape(RayOptions(workers=2), 2, 0, 10)
    assert (shape.workers, shape.cpus, shape.gpus, shape.threads) == (2, 0.75, 0.0, 1)
    assert pool_shape(RayOptions(), 16, 0, 100).workers == 8 and pool_shape(RayOptions(), 16, 0, 3).workers == 3
    gpu = pool_shape(RayOptions(gpus_per_worker=0.5), 32, 4, 100)
    assert (gpu.workers, gpu.gpus, gpu.cpus) == (8, 0.5, 3.93)
    with pytest.raises(PoseAppError, match="the cluster has 0 GPU"):
        pool_shape(RayOptions(gpus_per_worker=1), 8, 0, 10)
    with pytest.raises(PoseAppError, match="more than the cluster's 2"):
        pool_shape(RayOptions(workers=3, cpus_per_worker=1), 2, 0, 10)


@pytest.mark.parametrize("args, message", [
    (["--source", "webcam:0", "--ray"], None),
    (["--source", "rtsp://127.0.0.1:1/x", "--ray"], None),
    (["--workers", "2"], "--workers only act(s) with --ray"),
    (["--resume"], "--resume only act(s) with --ray"),
    (["--ray", "--show"], "--show needs the frames on this machine"),
], ids=["webcam", "stream", "workers-alone", "resume-alone", "show"])
def test_what_ray_cannot_do_is_one_line_before_it_starts(args, message, tmp_path):
    from poseapp.cli import main

    args = [*args] if "--source" in args else ["--source", str(DATA / "coco"), *args]
    result = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "out")])
    assert result.exit_code != 0
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    assert (message or "--ray shares out files") in lines[0] or (message is None and "cannot" in lines[0])
    assert not (tmp_path / "out").exists()


def test_a_model_the_workers_cannot_load_stops_the_run_in_one_line(tmp_path):
    """Offline with an empty weights cache: the driver resolves the zoo name (no download), the workers cannot
    load its weights, and the run ends with their one-line reason (a subprocess: its own local Ray)."""
    env = {**os.environ, "POSEAPP_HOME": str(tmp_path / "empty_cache")}
    run = subprocess.run([sys.executable, str(ROOT / "infer.py"), "--source", str(DATA / "coco"), "--pose-model",
                          "rtmpose-m_coco-256x192", "--det-model", str(DETECTOR), "--offline", "--no-save", "--json",
                          "--out", str(tmp_path / "out"), "--ray"], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 2, run.stderr  # a PoseAppError, as a bad option is
    errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "is not in the cache" in errors[0] and "--offline" in errors[0], run.stderr
    assert "Traceback" not in run.stderr


# ------------------------------------------------------------------------------------------- edges (no Ray)


def test_a_workers_error_of_many_lines_is_one():
    """An error whose text spans lines (ONNX Runtime's, a library's traceback-like message) is one line in the
    summary's failure list, as every other failure."""
    from poseapp.distributed.worker import _one_line

    error = RuntimeError("[ONNXRuntimeError] : 2 : INVALID_ARGUMENT :\n  Got invalid dimensions for input\n"
                         "\tindex: 2\n")
    assert _one_line(error) == "[ONNXRuntimeError] : 2 : INVALID_ARGUMENT : Got invalid dimensions for input index: 2"


def test_a_segment_past_the_real_end_reads_nothing_and_says_the_video_ended_early(tmp_path):
    """A segment that starts past a video's real end (planned from a header that counts more frames than the
    file holds; here simply asked for past a true header) reads nothing and says the video ended early, as a
    single-process run says of the whole video, instead of failing its task."""
    from poseapp.sources import VideoSource

    clip = make_clip(tmp_path / "short.avi", "walking", frames=10)[0]
    with VideoSource(clip, start=12, stop=24) as source:
        frames = list(source)
    assert frames == [] and len(source.failures) == 1
    assert "video ended early at frame 10 of 10" in source.failures[0][1]
    with VideoSource(clip, start=4, stop=8) as source:
        assert [f.index for f in source] == [4, 5, 6, 7] and source.failures == []


def _record_and_shards(out: Path, task) -> list[Path]:
    from poseapp.distributed.shards import TaskRecord, shard_path, write_record

    shard_dir_ = out / "shards"
    shard_dir_.mkdir(parents=True, exist_ok=True)
    for suffix in (".json", ".csv"):
        shard_path(out, task, suffix).write_text("left by an attempt before")
    write_record(out, task, TaskRecord(name=task.name, order=task.order, inputs=1))
    return sorted(shard_dir_.iterdir())


def test_a_task_that_took_its_worker_down_three_times_fails_and_leaves_no_record(tmp_path, monkeypatch):
    """PoseWorker._run with a ledger that counts a fourth start: the task fails with one line, and what the
    attempts before left (a record, shards) is gone, so --resume cannot trust it."""
    from poseapp.distributed.plan import Task
    from poseapp.distributed.shards import read_record
    from poseapp.distributed.worker import MAX_STARTS, PoseWorker

    task = Task(0, "images-000000-000000.abcdef012345", "image", ("a.jpg",))
    assert len(_record_and_shards(tmp_path, task)) == 3 and read_record(tmp_path, task) is not None

    class Ledger:
        class started:
            @staticmethod
            def remote(name: str) -> int:
                return MAX_STARTS + 1

    worker = PoseWorker.__new__(PoseWorker)
    worker.config = type("Config", (), {"out": tmp_path})()
    worker.error, worker.warnings, worker.ledger = None, [], Ledger()
    monkeypatch.setattr(ray, "get", lambda value: value)
    status, record, error = worker._run(task)
    assert (status, record) == ("failed", None) and f"died on each of {MAX_STARTS} attempts" in error
    assert list((tmp_path / "shards").iterdir()) == []


def test_merged_images_of_two_keypoint_sets_name_their_own_and_csv_shards_of_two_sets_are_refused(tmp_path):
    """Shard 1 holds COCO images, shard 2 an image of another set first: in the merged document each image
    whose set is not the header's carries its own ``keypoint_set``, as JsonWriter writes one document."""
    from poseapp.distributed.plan import Plan, Task
    from poseapp.distributed.shards import TaskRecord, merge, shard_path
    from poseapp.errors import OutputError

    tasks = (Task(0, "images-0.x", "image", ("a.jpg",)), Task(1, "images-1.x", "image", ("b.jpg", "c.jpg")))
    header = {"schema_version": 2, "keypoint_names": []}
    (tmp_path / "shards").mkdir()
    image = {"width": 1, "height": 1, "instances": []}
    shard_path(tmp_path, tasks[0], ".json").write_text(json.dumps(
        {**header, "keypoint_set": "coco", "images": [{"image": "a.jpg", **image}], "model": "m"}))
    shard_path(tmp_path, tasks[1], ".json").write_text(json.dumps(
        {**header, "keypoint_set": "ap10k", "images": [{"image": "b.jpg", **image},
                                                       {"image": "c.jpg", **image, "keypoint_set": "coco"}],
         "model": "m"}))
    plan = Plan("image", tasks, 3, "x")
    records = {t.name: TaskRecord(t.name, t.order) for t in tasks}
    merge(tmp_path, plan, records, keypoints=True, table=False)
    doc = json.loads((tmp_path / "predictions.json").read_text())
    assert doc["keypoint_set"] == "coco" and doc["model"] == "m"
    assert [(i["image"], i.get("keypoint_set")) for i in doc["images"]] == [("a.jpg", None), ("b.jpg", "ap10k"),
                                                                           ("c.jpg", None)]
    assert list(doc["images"][1]) == ["image", "width", "height", "keypoint_set", "instances"]
    shard_path(tmp_path, tasks[0], ".csv").write_text("source,nose_x\na.jpg,1\n")
    shard_path(tmp_path, tasks[1], ".csv").write_text("source,snout_x\nb.jpg,1\n")
    with pytest.raises(OutputError, match="hold two keypoint sets and cannot share one .csv file"):
        merge(tmp_path, plan, records, keypoints=False, table=True)
    assert not (tmp_path / "predictions.csv").exists()


def test_an_unreadable_video_is_a_task_of_its_own_and_does_not_stop_the_plan(tmp_path):
    from poseapp import PredictOptions
    from poseapp.distributed import plan_tasks

    make_clip(tmp_path / "good.avi", "walking", frames=30)
    (tmp_path / "broken.mp4").write_bytes(b"not a video")
    plan = plan_tasks(PredictOptions(source=tmp_path, track=False, save_media=False), segment_frames=10)
    assert [(t.output, t.start, t.stop) for t in plan.tasks] == [("broken", 0, None), ("good", 0, 10),
                                                                  ("good", 10, 20), ("good", 20, None)]


def test_resume_with_other_options_and_an_out_inside_a_recursive_folder_are_one_line(tmp_path):
    from poseapp.cli import main

    source = tmp_path / "clips"
    source.mkdir()
    make_clip(source / "walking.avi", "walking", frames=6)
    base = [*MODEL, "--source", str(source), "--no-save", "--json", "--ray"]
    out = tmp_path / "out"
    (out / "shards").mkdir(parents=True)
    (out / "shards" / "manifest.json").write_text(json.dumps({"digest": "0123456789ab", "tasks": []}))
    for args, words in [([*base, "--out", str(out), "--resume"], "holds a run with other options"),
                        ([*MODEL, "--source", str(source), "--json", "--ray", "--recursive", "--out",
                          str(source / "poses")],
                         "which --recursive walks")]:  # annotated copies of the videos would be read next time
        result = CliRunner().invoke(main, args)
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert result.exit_code != 0 and len(lines) == 1 and words in lines[0], result.output
    assert sorted(p.name for p in (out / "shards").iterdir()) == ["manifest.json"]
    assert not (source / "poses").exists()
    from poseapp import PredictOptions
    from poseapp.distributed import plan_tasks
    from poseapp.distributed.run import _check_apart, _check_resumable
    from poseapp.errors import OutputError

    options = PredictOptions(source=source, recursive=True, track=False, save_media=False)
    plan = plan_tasks(options)
    _check_apart(plan, source / "poses", options)  # without the annotated copies, nothing there is read again
    (out / "shards" / "manifest.json").write_text(json.dumps({"digest": plan.digest, "kind": "image"}))
    with pytest.raises(OutputError, match="holds a run of images, this source is of videos"):
        _check_resumable(out, plan)  # the digest is the options', the same for a folder of images
