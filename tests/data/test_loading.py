import torch

from pixelwise.data.loading import EpochBatches, SeededSamples, train_loader


def test_epoch_batches_depend_only_on_seed_and_epoch_and_resume_mid_epoch():
    sampler = EpochBatches(num_samples=10, batch_size=3, seed=7)
    sampler.set_epoch(2)
    whole = list(sampler)
    assert len(whole) == len(sampler) == 3, "the last partial batch is dropped"
    assert all(epoch == 2 for batch in whole for epoch, _ in batch)
    indices = [index for batch in whole for _, index in batch]
    assert len(set(indices)) == 9 and indices != sorted(indices), "nine distinct samples, shuffled"
    again = EpochBatches(num_samples=10, batch_size=3, seed=7)
    again.set_epoch(2, start_step=1)
    assert list(again) == whole[1:] and len(again) == 2
    again.set_epoch(3)
    assert [index for batch in again for _, index in batch] != indices, "another epoch, another order"


class Noise(torch.utils.data.Dataset):
    """Each item is a random number: what a random augmentation draws."""

    def __len__(self):
        return 8

    def __getitem__(self, index):
        return torch.rand(1), torch.zeros(1)


def test_persistent_workers_draw_what_a_single_process_draws_in_every_epoch():
    per_epoch = {}
    for workers in (0, 2):
        loader = train_loader(SeededSamples(Noise(), seed=3), batch_size=4, workers=workers)
        for epoch in (1, 2):
            loader.batch_sampler.set_epoch(epoch)
            per_epoch[workers, epoch] = torch.cat([images for images, _, _ in loader])
    assert torch.equal(per_epoch[0, 1], per_epoch[2, 1]) and torch.equal(per_epoch[0, 2], per_epoch[2, 2])
    assert not torch.equal(per_epoch[2, 1], per_epoch[2, 2]), "the workers see the new epoch"
