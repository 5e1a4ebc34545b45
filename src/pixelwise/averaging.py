"""The weights' exponential moving average (`ema_decay`): what a run that asks for it validates and saves.

torch's AveragedModel keeps it, BatchNorm's running statistics averaged with the weights. In
the checkpoint the average is the model (`state_dict`, what predict, eval and export load);
the weights being trained are kept beside it for a resume.
"""

from __future__ import annotations

from pathlib import Path

from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from pixelwise.checkpoint import TRAINED_WEIGHTS, load_weights
from pixelwise.distributed import Ranks, average_buffers_over_ranks
from pixelwise.errors import CheckpointError
from pixelwise.segmenter import Segmenter


def weight_average(segmenter: Segmenter, decay: float) -> AveragedModel | None:
    """A copy of `segmenter` that `update_parameters` moves 1 - `decay` of the way to it; None for decay 0."""
    if not decay:
        return None
    return AveragedModel(segmenter, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def share_batch_statistics(ranks: Ranks, trained: Segmenter, average: AveragedModel | None) -> None:
    """Average the BatchNorm statistics of `trained` and of its `average` over the ranks, as rank 0 then saves them."""
    average_buffers_over_ranks(ranks, trained)
    if average is not None:
        average_buffers_over_ranks(ranks, average.module)


def average_fields(trained: Segmenter, average: AveragedModel | None) -> dict:
    """What last.pt keeps beside the averaged model to resume: the trained weights."""
    if average is None:
        return {}
    return {TRAINED_WEIGHTS: trained.network.state_dict()}


def restore_weights(
    path: Path, state: dict, trained: Segmenter, average: AveragedModel | None, model_name: str
) -> None:
    """Load a run's trained weights into `trained`, and into `average` (with ema_decay) the checkpoint's model.

    `state` is a last.pt that `load_checkpoint(for_resume=True)` has checked. Without an average
    the checkpoint's model is the trained weights, and a last.pt that says otherwise is refused.
    """
    if average is None:
        if TRAINED_WEIGHTS in state:
            raise CheckpointError(
                f"{path}: damaged checkpoint: it holds {TRAINED_WEIGHTS}, which only a run with ema_decay keeps"
            )
        load_weights(path, trained.network, state["state_dict"], model_name)
        return
    if TRAINED_WEIGHTS not in state:
        raise CheckpointError(
            f"{path}: damaged checkpoint: it lacks {TRAINED_WEIGHTS}, which a run with ema_decay keeps to resume"
        )
    load_weights(path, trained.network, state[TRAINED_WEIGHTS], model_name)
    load_weights(path, average.module.network, state["state_dict"], model_name)
    average.n_averaged.fill_(1)  # a last.pt follows a step; the decay's update reads the count only when it is 0
