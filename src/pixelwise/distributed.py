"""The processes of one run under torchrun: the process group, and what every rank must agree on.

One process (no torchrun) is rank 0 of a world of 1, and every function here then does
what a plain run does: no collective, errors raised as they are.
"""

from __future__ import annotations

import atexit
import contextlib
import inspect
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Dataset, Subset

from pixelwise.errors import PixelwiseError, TrainingError, one_line

Result = TypeVar("Result")
ADDRESS_VARIABLES = ("MASTER_ADDR", "MASTER_PORT")  # where rank 0 listens; torchrun sets them with RANK and the rest
AGREED_ERRORS = (PixelwiseError, OSError)  # errors one rank reports so that every rank stops with it
LOST_PEER = re.compile(r"gloo|nccl|connection|peer|timed out", re.IGNORECASE)  # how backends report a lost process
CPU_BACKENDS = ("gloo", "mpi")  # the agreements between ranks are small CPU tensors


@dataclass(frozen=True)
class Ranks:
    """This process's place in the run: its rank, the number of processes, its rank on this machine."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Whether this process is rank 0, the one that writes the run directory and logs."""
        return self.rank == 0


ONE_PROCESS = Ranks()


class RankFailure(TrainingError):
    """An error on one process of a distributed run, raised on every process so that all stop together."""

    def __init__(self, rank: int, message: str, original: BaseException | None = None):
        super().__init__(f"rank {rank}: {message}")
        self.rank = rank
        self.original = original  # the error itself, on the rank where it happened


def _whole_number(environ: Mapping[str, str], name: str, default: int) -> int:
    """An environment variable torchrun sets, as a whole number."""
    text = environ.get(name)
    if text is None:
        return default
    try:
        return int(text)
    except ValueError:
        raise TrainingError(f"environment variable {name}={text!r} is not a whole number (torchrun sets it)") from None


def launched_ranks(environ: Mapping[str, str] = os.environ) -> Ranks:
    """The place torchrun gave this process in its environment; rank 0 of 1 when it was not started by torchrun."""
    rank, world_size = _whole_number(environ, "RANK", 0), _whole_number(environ, "WORLD_SIZE", 1)
    if world_size < 1 or not 0 <= rank < world_size:
        raise TrainingError(f"RANK={rank} and WORLD_SIZE={world_size} do not name a process of a run")
    missing = [name for name in ADDRESS_VARIABLES if world_size > 1 and not environ.get(name)]
    if missing:
        raise TrainingError(
            f"WORLD_SIZE={world_size} is set but {missing[0]} is not: start distributed runs with torchrun"
        )
    return Ranks(rank, world_size, _whole_number(environ, "LOCAL_RANK", 0))


def _backend() -> str:
    """gloo for tensors on the CPU, NCCL for those on CUDA GPUs where this PyTorch has it."""
    return "cpu:gloo,cuda:nccl" if torch.cuda.is_available() and dist.is_nccl_available() else "gloo"


def join_process_group() -> Ranks:
    """This process's Ranks; under torchrun, having joined its process group (once, until the process exits).

    A group the caller already joined is used as it is, if it has a CPU backend. Staying in
    the group lets a script call `train` more than once.
    """
    if dist.is_available() and dist.is_initialized():
        backend = dist.get_backend()
        if not any(name in backend for name in CPU_BACKENDS):
            raise TrainingError(
                f"the process group was joined with the {backend} backend alone, but the processes of a run agree "
                "on the CPU: join it with backend='cpu:gloo,cuda:nccl'"
            )
        return Ranks(dist.get_rank(), dist.get_world_size(), _whole_number(os.environ, "LOCAL_RANK", 0))
    ranks = launched_ranks()
    if ranks.world_size == 1:
        return ranks
    if not dist.is_available():
        raise TrainingError("this PyTorch build has no torch.distributed: run one process")
    if torch.cuda.is_available() and ranks.local_rank < torch.cuda.device_count():
        torch.cuda.set_device(ranks.local_rank)  # NCCL and object collectives use the current device
    dist.init_process_group(backend=_backend())
    atexit.register(_leave_process_group)
    return ranks


def _leave_process_group() -> None:
    """Leave the process group at exit, if still in it."""
    if dist.is_initialized():
        dist.destroy_process_group()


@contextlib.contextmanager
def talking_to_other_ranks(ranks: Ranks) -> Iterator[None]:
    """Code that waits for the other processes (a collective, DDP's backward pass): a lost one as a TrainingError."""
    if ranks.world_size == 1:
        yield
        return
    try:
        yield
    except RuntimeError as error:  # gloo reports a lost process as RuntimeError, NCCL as DistBackendError
        if not (isinstance(error, dist.DistError) or LOST_PEER.search(str(error))):
            raise
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        cause = re.sub(r"^\[[^\]]*\]\s*", "", first_line).split(". ")[0]  # without gloo's "[file.cc:534]" and advice
        raise TrainingError(
            f"lost contact with another process of the run, which stopped or was killed ({cause})"
        ) from None


def share(ranks: Ranks, error: BaseException | None, *numbers: float) -> torch.Tensor:
    """Every rank's `numbers` as rows of a (world_size, len(numbers)) table; RankFailure everywhere if any failed.

    A collective: every process calls it at the same point of the run. The failure names the
    lowest rank that brought an error, with that error's message. One process gets its own
    row back, or its error raised as it is.
    """
    if ranks.world_size == 1:
        if error is not None:
            raise error
        return torch.tensor([numbers], dtype=torch.float64)
    table = torch.zeros(ranks.world_size, 1 + len(numbers), dtype=torch.float64)
    table[ranks.rank] = torch.tensor([error is not None, *numbers], dtype=torch.float64)
    with talking_to_other_ranks(ranks):
        dist.all_reduce(table)
    failed = table[:, 0].nonzero().flatten().tolist()
    if failed:
        messages = gather(ranks, None if error is None else one_line(error))
        raise RankFailure(failed[0], messages[failed[0]], error if failed[0] == ranks.rank else None) from None
    return table[:, 1:]


def gather(ranks: Ranks, value) -> list:
    """Every rank's `value` (picklable), in rank order; a collective."""
    if ranks.world_size == 1:
        return [value]
    gathered = [None] * ranks.world_size
    with talking_to_other_ranks(ranks):
        dist.all_gather_object(gathered, value)
    return gathered


def on_every_rank(ranks: Ranks, compute: Callable[[], Result]) -> Result:
    """`compute()` on every rank; an error it raises on one stops all of them (RankFailure)."""
    result, error = None, None
    try:
        result = compute()
    except AGREED_ERRORS as caught:
        if ranks.world_size == 1:
            raise
        error = caught
    share(ranks, error)
    return result


def on_rank_zero(ranks: Ranks, compute: Callable[[], Result]) -> Result:
    """`compute()` on rank 0 alone, its result given to every rank; an error it raises there stops all of them."""
    if ranks.world_size == 1:
        return compute()
    result = on_every_rank(ranks, compute if ranks.is_main else lambda: None)
    box = [result]
    with talking_to_other_ranks(ranks):
        dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(ranks: Ranks) -> None:
    """Wait until every rank gets here."""
    if ranks.world_size > 1:
        with talking_to_other_ranks(ranks):
            dist.barrier()


def sum_over_ranks(ranks: Ranks, tensor: torch.Tensor) -> torch.Tensor:
    """`tensor` summed element by element over every rank (in place); a collective."""
    if ranks.world_size > 1:
        with talking_to_other_ranks(ranks):
            dist.all_reduce(tensor)
    return tensor


def average_buffers_over_ranks(ranks: Ranks, module: nn.Module) -> None:
    """Give every rank the ranks' mean of BatchNorm's running statistics.

    Each rank keeps those statistics from its own shares of the batches (`data_parallel` does
    not overwrite them with rank 0's at every step); their mean estimates them from every
    share, as timm's `distribute_bn(reduce=True)` does before it validates. Training itself
    does not read them: BatchNorm normalises a training batch by the batch's own statistics.
    """
    if ranks.world_size > 1:
        with talking_to_other_ranks(ranks):
            for name, buffer in module.named_buffers():
                if name.endswith(("running_mean", "running_var")):
                    dist.all_reduce(buffer)
                    buffer.div_(ranks.world_size)


def rank_share(dataset: Dataset, ranks: Ranks) -> Dataset:
    """The items of `dataset` this rank evaluates: every world_size-th from its rank on; none twice, none left out."""
    if ranks.world_size == 1:
        return dataset
    return Subset(dataset, range(ranks.rank, len(dataset), ranks.world_size))


def data_parallel(module: nn.Module, ranks: Ranks, device: torch.device) -> nn.Module:
    """`module` wrapped in DistributedDataParallel, which averages gradients over the ranks; itself for one process.

    Each rank keeps its own buffers; `average_buffers_over_ranks` merges them.
    """
    if ranks.world_size == 1:
        return module
    device_ids = [device.index] if device.type == "cuda" else None
    wrapper = nn.parallel.DistributedDataParallel
    own_buffers = (  # the argument's name since PyTorch 2.14, and before it
        {"forward_sync_buffers": False}
        if "forward_sync_buffers" in inspect.signature(wrapper).parameters
        else {"broadcast_buffers": False}
    )
    return wrapper(module, device_ids=device_ids, **own_buffers)


def rank_device(device: torch.device, ranks: Ranks) -> torch.device:
    """The device of this rank: on CUDA, its local rank's GPU; a device naming one GPU is refused for many ranks."""
    if ranks.world_size == 1 or device.type != "cuda":
        return device
    if device.index is not None:
        raise TrainingError(
            f"device {device} names one GPU, but each of the {ranks.world_size} processes uses the GPU of its local "
            "rank: give the device as cuda or auto"
        )
    if ranks.local_rank >= torch.cuda.device_count():
        raise TrainingError(
            f"local rank {ranks.local_rank} has no GPU of its own: this machine has {torch.cuda.device_count()}; start "
            "at most that many processes per machine"
        )
    return torch.device("cuda", ranks.local_rank)
