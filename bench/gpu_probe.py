"""Run a training program (``-m fturun ...`` or ``script.py ...``) unchanged and measure it from
outside: steady-state training throughput and peak GPU memory, written as JSON to ``--out``.

    python bench/gpu_probe.py --out probe.json --warmup 20 -- -m fturun recipe.json
    python bench/gpu_probe.py --out probe.json --warmup 20 -- bench/handwritten_cls.py --train ...

Every ``transformers.Trainer`` the program trains gets one more callback: it synchronises the GPU
at the end of optimizer step ``--warmup`` and of the last step and counts the samples between
(steps x the global batch), so start-up, data preparation, the first steps (and a torch.compile
graph build) stay out of the figure. The Trainer's own ``train_samples_per_second`` (whole
``train()``, warm-up included) is recorded next to it. Peak memory: ``torch.cuda``'s peak
allocated and reserved bytes, or on CPU the process's peak resident set.
"""

import argparse
import atexit
import json
import os
import resource
import runpy
import sys
import time

START = time.perf_counter()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--warmup", type=int, default=20, help="optimizer steps left out")
    parser.add_argument("program", nargs=argparse.REMAINDER,
                        help="-- -m MODULE ARGS... | -- SCRIPT ARGS...")
    args = parser.parse_args()
    program = args.program[1:] if args.program[:1] == ["--"] else args.program
    if not program:
        parser.error("name the program after --")
    result = {"command": program, "steady": None}

    import torch
    import transformers

    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.reset_peak_memory_stats()

    class SteadyClock(transformers.TrainerCallback):
        def __init__(self):
            self.t0 = self.step0 = None

        def _now(self):
            if cuda:
                torch.cuda.synchronize()
            return time.perf_counter()

        def on_step_end(self, targs, state, control, **kwargs):
            warmup = min(args.warmup, max(state.max_steps // 2, 1))
            if state.global_step == warmup:
                self.t0, self.step0 = self._now(), state.global_step
            elif state.global_step == state.max_steps and self.t0 is not None:
                seconds = self._now() - self.t0
                steps = state.global_step - self.step0
                batch = (targs.per_device_train_batch_size * max(targs.world_size, 1)
                         * targs.gradient_accumulation_steps)
                result["steady"] = {"steps": steps, "seconds": round(seconds, 4),
                                    "global_batch": batch,
                                    "samples_per_second": round(steps * batch / seconds, 2)}

    original_train = transformers.Trainer.train

    def train(self, *a, **kw):
        self.add_callback(SteadyClock())
        output = original_train(self, *a, **kw)
        result["trainer_samples_per_second"] = output.metrics.get("train_samples_per_second")
        result["train_loss"] = output.metrics.get("train_loss")
        return output

    transformers.Trainer.train = train

    def report():
        result["wall_seconds"] = round(time.perf_counter() - START, 2)
        if cuda:
            result["device"] = torch.cuda.get_device_name(0)
            result["peak_allocated_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 3)
            result["peak_reserved_gib"] = round(torch.cuda.max_memory_reserved() / 2**30, 3)
        else:
            result["device"] = "cpu"
            result["peak_rss_gib"] = round(
                resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3)
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2)

    atexit.register(report)
    if program[0] == "-m":
        sys.argv = [program[1], *program[2:]]
        runpy.run_module(program[1], run_name="__main__", alter_sys=True)
    else:
        sys.argv = list(program)
        sys.path.insert(0, os.path.dirname(os.path.abspath(program[0])))
        runpy.run_path(program[0], run_name="__main__")


if __name__ == "__main__":
    main()
