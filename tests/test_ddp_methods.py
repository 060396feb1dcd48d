"""Every method of tests/method_cases.py under two gloo processes: the gradients of one step, averaged over the
ranks as DistributedDataParallel averages them, equal the single-process gradients on the same global batch.

BatchNorm layers are replaced by Identity on both sides (per-rank batch statistics differ from global ones by
design; the official codes use SyncBatchNorm for that, which torch runs on GPUs only), so what is checked is
exactly the methods' own cross-sample coupling: gathers with gradient, queues, Sinkhorn, centres, whitening.
Libraries have shipped a 1/world_size error here."""
import os
import shutil

import pytest
import torch
import torch.distributed as dist
from dist_helpers import spawn, strip_batchnorm
from method_cases import TINY

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORLD = 2



class Control(torch.nn.Module):
    """A contrastive toy whose loss couples the samples of the batch: with `gathered` it gathers the embeddings
    with gradient (right), without it each rank only sees its own half (the classic DDP mistake). The harness
    must accept the first and reject the second."""

    def __init__(self, gathered: bool):
        super().__init__()
        self.gathered, self.a, self.b = gathered, torch.nn.Linear(5, 4), torch.nn.Linear(5, 4)

    def forward(self, batch):
        from vidssl.dist import gather_with_grad

        q = torch.nn.functional.normalize(self.a(batch["x"]), dim=1)
        k = torch.nn.functional.normalize(self.b(batch["x"]), dim=1)
        if self.gathered:
            q, k = gather_with_grad(q), gather_with_grad(k)
        return {"loss": torch.nn.functional.cross_entropy(q @ k.T / 0.5, torch.arange(len(q)))}


CONTROLS = {"control_gathered": True, "control_naive": False}


def build(cfg):
    from vidssl.methods import build_method

    torch.manual_seed(0)
    name = cfg["method"]["name"]
    return Control(CONTROLS[name]) if name in CONTROLS else strip_batchnorm(build_method(**cfg["method"]))


def global_batch(name, video_dir):
    """(method config, the augmented global batch of the method's tiny demo config)."""
    from vidssl.config import load_config, to_dict
    from vidssl.data import VideoDataset, collate
    from vidssl.data.datasets import discover_sources
    from vidssl.optim.optimizer import step_values

    cfg = load_config(os.path.join(ROOT, "configs", f"{name}_demo.yaml"),
                      [f"data.root={video_dir}", "out=/unused", *TINY[name]])
    batch_size = 2 * max(cfg.trainer.batch_size // 2, 1)  # even: split over two ranks
    method = build(to_dict(cfg))
    dataset = VideoDataset(discover_sources(str(video_dir)), method.data_spec(cfg.data), cfg.data.clips_per_video)
    batch = collate([dataset[(i % len(dataset), 1000 + i)] for i in range(batch_size)])
    batch.pop("skipped")
    batch["schedule"] = {**step_values(0, cfg.trainer.max_steps, cfg.optim, cfg.schedule),
                         **{k: float(f(0)) for k, f in method.schedules(cfg.trainer.max_steps).items()}}
    with torch.no_grad():
        batch = method.device_augment(batch, torch.Generator().manual_seed(7))
    return to_dict(cfg), batch, batch_size


def rank_slice(batch, n, rank):
    """This rank's half of every batch-first entry (tensors, lists of tensors, per-sample lists)."""
    part = slice(rank * n // WORLD, (rank + 1) * n // WORLD)
    out = {}
    for k, v in batch.items():
        if torch.is_tensor(v) and v.ndim and v.shape[0] == n:
            out[k] = v[part]
        elif isinstance(v, list) and v and all(torch.is_tensor(x) and x.ndim and x.shape[0] == n for x in v):
            out[k] = [x[part] for x in v]
        elif isinstance(v, list) and len(v) == n:
            out[k] = v[part]
        else:
            out[k] = v
    return out


def gradients(cfg, batch):
    method = build(cfg)
    torch.manual_seed(1)
    method(batch)["loss"].backward()
    return {n: p.grad.detach().clone() for n, p in method.named_parameters() if p.grad is not None}


def _worker(rank, port, cases, out):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD)
    results = {}
    try:
        for name, (cfg, batch, n) in cases.items():
            try:
                grads = gradients(cfg, rank_slice(batch, n, rank))
                for g in grads.values():  # what DDP leaves in .grad: the mean over ranks
                    dist.all_reduce(g)
                    g /= WORLD
                results[name] = grads
            except Exception as e:  # one method's failure must not hide the others'
                results[name] = f"{type(e).__name__}: {e}"
        torch.save(results, os.path.join(out, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()



@pytest.fixture(scope="module")
def ddp_runs(tmp_path_factory, sample_videos):
    videos = tmp_path_factory.mktemp("videos")
    shutil.copy(sample_videos[2], videos / "a.mp4")
    shutil.copy(sample_videos[2], videos / "b.mp4")
    cases, single = {}, {}
    x = torch.randn(8, 5, generator=torch.Generator().manual_seed(0))
    for name in CONTROLS:
        cases[name] = ({"method": {"name": name}}, {"x": x}, 8)
        single[name] = gradients(*cases[name][:2])
    for name in sorted(TINY):
        try:
            cases[name] = global_batch(name, videos)
            single[name] = gradients(cases[name][0], cases[name][1])
        except Exception as e:
            single[name] = f"{type(e).__name__}: {e}"
            cases.pop(name, None)
    out = str(tmp_path_factory.mktemp("ddp"))
    spawn(_worker, (cases, out), WORLD)
    return single, [torch.load(os.path.join(out, f"rank{r}.pt")) for r in range(WORLD)]


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(TINY))
def test_two_rank_gradients_equal_single_process(ddp_runs, name):
    single, ranks = ddp_runs
    ref = single[name]
    assert not isinstance(ref, str), f"single process: {ref}"
    assert ref and any(g.abs().sum() > 0 for g in ref.values()), "no gradient at all"
    for r, result in enumerate(ranks):
        got = result[name]
        assert not isinstance(got, str), f"rank {r}: {got}"
        assert got.keys() == ref.keys()
        for k in ref:
            torch.testing.assert_close(got[k], ref[k], rtol=1e-4, atol=1e-6, msg=lambda m: f"{name} {k}: {m}")


@pytest.mark.slow
def test_the_check_catches_a_missing_gather(ddp_runs):
    single, ranks = ddp_runs
    for result in ranks:
        for k, ref in single["control_gathered"].items():
            torch.testing.assert_close(result["control_gathered"][k], ref, rtol=1e-4, atol=1e-6)
        assert any(not torch.allclose(result["control_naive"][k], ref, rtol=1e-3)
                   for k, ref in single["control_naive"].items())
