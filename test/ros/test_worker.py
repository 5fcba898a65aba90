"""The node's two-thread frame loop: the completion thread keeps order, its backlog bounds what waits,
a failing job does not end it, and the worker hands each frame's second half over in camera order."""

import threading
import time

from esnet_ros.ros.worker import CompletionThread, FrameWorker


def test_completion_thread_runs_jobs_in_order_and_survives_a_failure(caplog):
    done = []
    thread = CompletionThread("test_completion", backlog=3)

    def fail():
        raise RuntimeError("boom")

    for i in range(5):
        thread.submit(lambda i=i: (time.sleep(0.01), done.append(i)))
    thread.submit(fail)
    thread.submit(lambda: done.append("after"))
    assert thread.wait(5.0)
    assert done == [0, 1, 2, 3, 4, "after"]
    assert "a frame's completion failed" in caplog.text and "boom" in caplog.text


def test_backlog_zero_hands_a_job_over_only_when_the_thread_is_idle():
    release = threading.Event()
    thread = CompletionThread("test_backlog")
    thread.submit(release.wait)
    submitted = threading.Event()
    t = threading.Thread(target=lambda: (thread.submit(lambda: None), submitted.set()))
    t.start()
    assert not submitted.wait(0.2)  # the first job still runs: the second waits in submit()
    assert not thread.wait(0.05)
    release.set()
    assert submitted.wait(2.0) and thread.wait(2.0)
    t.join()


def test_frame_worker_completes_frames_in_order_beside_the_next_start():
    starts, completions, overlaps = [], [], []
    in_second_half = threading.Event()

    def start(msg):
        if in_second_half.is_set():
            overlaps.append(msg)  # this frame's first half ran while the last one completed
        starts.append(msg)
        if msg == "bad":
            return None  # e.g. a rejected frame: nothing to complete

        def second_half():
            in_second_half.set()
            time.sleep(0.05)
            completions.append(msg)
            in_second_half.clear()

        return second_half

    worker = FrameWorker(start, lambda: 0.0)
    worker.run()
    for msg in (1, "bad", 2, 3):
        worker.slot.put(msg)
        deadline = time.monotonic() + 2.0
        while msg not in starts and time.monotonic() < deadline:
            time.sleep(0.002)
    deadline = time.monotonic() + 2.0
    while len(completions) < 3 and time.monotonic() < deadline:  # frame 3's second half is handed over
        time.sleep(0.002)  # just after its start returns
    assert worker.drain(2.0)
    assert completions == [1, 2, 3] and starts == [1, "bad", 2, 3]
    assert overlaps, "no first half ran beside a second half"
    assert worker.stop() is False and worker.stopping  # nothing was left waiting
    worker.slot.put(4)
    time.sleep(0.1)
    assert 4 not in starts  # a stopped worker takes no frame


def test_no_frame_outlives_its_completion():
    """The last job (a closure over the node and its frame) is dropped once done: a node kept alive by it
    outlived destroy_node(), and its participant stayed in other processes' graph for the DDS lease (~20 s)."""
    import gc
    import weakref

    class Frame:
        def __call__(self):
            pass

    thread = CompletionThread("test_references")
    job = Frame()
    ref = weakref.ref(job)
    thread.submit(job)
    del job
    assert thread.wait(2.0)
    gc.collect()
    assert ref() is None
