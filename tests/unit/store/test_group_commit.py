"""`GroupCommitter`: who leads, what a group holds, and what followers see when it fails.

Pure anyio (no database), so these run on asyncio and trio.
"""

from __future__ import annotations

from collections.abc import Sequence

import anyio
import pytest

from treadle.store._errors import StoreUnavailable
from treadle.store._group import GroupCommitter, GroupRequest

pytestmark = pytest.mark.anyio


class Recorder:
    """A commit that records each group and, until released, blocks in the first one."""

    def __init__(self) -> None:
        self.groups: list[list[str]] = []
        self.release = anyio.Event()
        self.entered = anyio.Event()

    async def commit(self, group: Sequence[GroupRequest[str]]) -> None:
        self.groups.append([r.payload for r in group])
        self.entered.set()
        await self.release.wait()
        for request in group:
            request.succeed(f"done {request.payload}")


async def test_a_lone_request_is_committed_at_once_by_its_own_caller() -> None:
    recorder = Recorder()
    recorder.release.set()
    committer = GroupCommitter(recorder.commit, leaders=1, max_size=8)

    assert await committer.submit("r1", "a") == "done a"
    assert recorder.groups == [["a"]]


async def test_requests_waiting_behind_a_busy_leader_share_the_next_group() -> None:
    recorder = Recorder()
    committer = GroupCommitter(recorder.commit, leaders=1, max_size=8)
    results: dict[str, object] = {}

    async def submit(run_id: str, payload: str) -> None:
        results[payload] = await committer.submit(run_id, payload)

    async with anyio.create_task_group() as tg:
        tg.start_soon(submit, "r1", "first")
        await recorder.entered.wait()
        for i in range(5):
            tg.start_soon(submit, f"r{i + 2}", f"p{i}")
        await anyio.wait_all_tasks_blocked()
        recorder.release.set()

    # trio starts tasks in any order, so the group's order is theirs.
    assert [sorted(g) for g in recorder.groups] == [["first"], ["p0", "p1", "p2", "p3", "p4"]]
    assert results == {p: f"done {p}" for p in ["first", "p0", "p1", "p2", "p3", "p4"]}


async def test_a_group_holds_one_request_per_run_and_at_most_max_size() -> None:
    recorder = Recorder()
    committer = GroupCommitter(recorder.commit, leaders=1, max_size=3)

    async with anyio.create_task_group() as tg:
        tg.start_soon(committer.submit, "busy", "first")
        await recorder.entered.wait()
        for run_id, payload in [("a", "a1"), ("a", "a2"), ("b", "b1"), ("c", "c1"), ("d", "d1")]:
            tg.start_soon(committer.submit, run_id, payload)
            await anyio.wait_all_tasks_blocked()
        recorder.release.set()

    # a2 waits for the group after a1's (it must see a1's state); the size caps each group.
    assert recorder.groups == [["first"], ["a1", "b1", "c1"], ["a2", "d1"]]


async def test_a_failed_commit_fails_every_request_of_its_group() -> None:
    async def commit(group: Sequence[GroupRequest[str]]) -> None:
        raise RuntimeError("database gone")

    committer = GroupCommitter(commit, leaders=1, max_size=8)
    with pytest.raises(RuntimeError, match="database gone"):
        await committer.submit("r1", "a")


async def test_a_request_the_commit_left_unsettled_fails_retryably() -> None:
    async def commit(group: Sequence[GroupRequest[str]]) -> None:
        return None

    committer = GroupCommitter(commit, leaders=1, max_size=8)
    with pytest.raises(StoreUnavailable, match="undecided"):
        await committer.submit("r1", "a")


async def test_followers_of_a_cancelled_leader_fail_retryably() -> None:
    first_release = anyio.Event()
    second_entered = anyio.Event()
    calls = 0

    async def commit(group: Sequence[GroupRequest[str]]) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            await first_release.wait()
            for request in group:
                request.succeed("ok")
            return
        second_entered.set()
        await anyio.sleep_forever()  # the leader of this group is cancelled in here

    committer = GroupCommitter(commit, leaders=1, max_size=8)
    outcome: list[BaseException] = []

    async def follower() -> None:
        try:
            await committer.submit("f", "follower")
        except StoreUnavailable as exc:
            outcome.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(committer.submit, "a", "first")
        await anyio.wait_all_tasks_blocked()
        with anyio.CancelScope() as leader_scope:
            async with anyio.create_task_group() as leader_group:
                leader_group.start_soon(committer.submit, "l", "leader")
                await anyio.wait_all_tasks_blocked()
                tg.start_soon(follower)
                await anyio.wait_all_tasks_blocked()
                first_release.set()  # the leader, first in the queue, takes itself and f
                with anyio.fail_after(5):
                    await second_entered.wait()
                leader_scope.cancel()

    assert len(outcome) == 1
    assert "interrupted" in str(outcome[0])


async def test_a_cancelled_waiting_request_leaves_the_queue() -> None:
    recorder = Recorder()
    committer = GroupCommitter(recorder.commit, leaders=1, max_size=8)

    async with anyio.create_task_group() as tg:
        tg.start_soon(committer.submit, "r1", "first")
        await recorder.entered.wait()
        with anyio.move_on_after(0.01):
            await committer.submit("r2", "given up")
        tg.start_soon(committer.submit, "r3", "kept")
        await anyio.wait_all_tasks_blocked()
        recorder.release.set()

    assert recorder.groups == [["first"], ["kept"]]
