"""Run the demo's tasks (stages, evaluations) as their dependencies allow.

A task is one tool process. Up to ``slots`` run at once, each with
``cores // slots`` CPU threads: on a small machine two one-thread trainings
side by side do more work than one two-thread training (small convolutions
scale poorly over threads), and the single-threaded parts of a process
(start-up, data loading, evaluation) no longer leave a core idle. Among
ready tasks the one with the longest chain of work behind it starts first.
Every task's process has the same thread count whatever runs beside it, so
the results do not depend on the order.
"""
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from typing import Callable, Dict, List, NamedTuple, Sequence, Tuple


class Task(NamedTuple):
    """One process: ``run`` returns its seconds (0.0 when skipped, e.g. a
    stage already trained); ``cost`` (seconds, rough) orders the tasks
    and feeds the time estimate."""
    name: str
    run: Callable[[], float]
    deps: Tuple[str, ...]
    cost: float


def _tail_costs(tasks: Sequence[Task]) -> Dict[str, float]:
    """Each task's cost plus that of the longest chain depending on it."""
    users: Dict[str, List[Task]] = {t.name: [] for t in tasks}
    for t in tasks:
        for dep in t.deps:
            users[dep].append(t)
    tail: Dict[str, float] = {}
    path: List[str] = []

    def visit(task):
        if task.name in path:
            raise ValueError(f'dependency cycle: {path + [task.name]}')
        if task.name not in tail:
            path.append(task.name)
            tail[task.name] = task.cost + max(
                (visit(u) for u in users[task.name]), default=0.0)
            path.pop()
        return tail[task.name]

    for t in tasks:
        visit(t)
    return tail


def clock(seconds: float) -> str:
    """``'1 h 02 min'``, ``'4 min 05 s'`` or ``'12 s'``."""
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f'{seconds // 3600} h {seconds % 3600 // 60:02d} min'
    if seconds >= 60:
        return f'{seconds // 60} min {seconds % 60:02d} s'
    return f'{seconds} s'


class Progress:
    """Elapsed time and an estimate of the time left, from the cost of
    the tasks done so far against their wall time (skipped tasks leave
    both sides)."""

    def __init__(self, tasks: Sequence[Task], start: float):
        self.start = start
        self.total = len(tasks)
        self.left = sum(t.cost for t in tasks)
        self.done_cost = 0.0
        self.done = 0

    def finish(self, task: Task, seconds: float) -> str:
        """Record ``task`` as done and return its progress line."""
        self.done += 1
        self.left -= task.cost
        elapsed = time.time() - self.start
        if seconds > 0:
            self.done_cost += task.cost
        what = f'done in {clock(seconds)}' if seconds > 0 else \
            'already done, kept (--force redoes it)'
        line = (f'{task.name}: {what} [{self.done}/{self.total}, elapsed '
                f'{clock(elapsed)}')
        if self.done_cost > 0 and self.left > 0:
            rate = elapsed / self.done_cost
            line += f', about {clock(self.left * rate)} left'
        return line + ']'


def run_tasks(tasks: Sequence[Task],
              slots: int,
              log: Callable[[str], None],
              on_failure: Callable[[], None] = lambda: None
              ) -> Dict[str, float]:
    """Run ``tasks`` (dependencies first), at most ``slots`` at once.

    Args:
        tasks (Sequence[Task]): Unique names; ``deps`` name other tasks.
        slots (int): Processes at once (>= 1).
        log (callable): Receives one progress line per finished task.
        on_failure (callable): Called once a task fails, to end the
            processes of the tasks still running. Defaults to nothing.

    Returns:
        dict: Task name -> seconds.

    Raises:
        ValueError: For an unknown dependency or a cycle.
        Exception: The first task failure, once the others running have
            been stopped (``on_failure``) and have ended.
    """
    names = {t.name for t in tasks}
    unknown = {d for t in tasks for d in t.deps} - names
    if unknown:
        raise ValueError(f'unknown dependencies {sorted(unknown)}')
    tail = _tail_costs(tasks)
    pending = sorted(tasks, key=lambda t: -tail[t.name])
    progress = Progress(tasks, time.time())
    seconds: Dict[str, float] = {}
    running = {}
    with ThreadPoolExecutor(max_workers=slots) as pool:
        while pending or running:
            ready = [t for t in pending if all(d in seconds for d in t.deps)]
            for task in ready[:slots - len(running)]:
                pending.remove(task)
                running[pool.submit(task.run)] = task
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                task = running.pop(future)
                if future.exception() is not None:
                    # Start nothing more; end what runs.
                    pending.clear()
                    on_failure()
                    wait(running)
                    raise future.exception()
                seconds[task.name] = future.result()
                log(progress.finish(task, seconds[task.name]))
    return seconds

