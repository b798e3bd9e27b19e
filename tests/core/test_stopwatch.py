"""scaling.core.stopwatch: counts running time only, pauses for evaluation, resumes from a total."""

from scaling.core.stopwatch import Stopwatch


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_counts_only_while_running_and_pauses():
    clock = FakeClock()
    watch = Stopwatch(clock=clock)
    clock.now += 5  # not started: not counted
    assert watch.elapsed == 0.0 and not watch.running
    watch.start()
    clock.now += 2
    assert watch.elapsed == 2.0
    with watch.paused():
        clock.now += 30  # an evaluation
        assert watch.elapsed == 2.0 and not watch.running
    assert watch.running
    clock.now += 1
    assert watch.stop() == 3.0
    clock.now += 10
    assert watch.elapsed == 3.0


def test_resumes_from_a_saved_total_and_pausing_a_stopped_watch_leaves_it_stopped():
    clock = FakeClock()
    watch = Stopwatch(12.5, clock=clock)
    with watch.paused():
        clock.now += 4
    assert not watch.running and watch.elapsed == 12.5
    watch.start().start()  # a second start changes nothing
    clock.now += 0.5
    assert watch.elapsed == 13.0
