"""One line per method: overrides that make its `configs/<name>_demo.yaml` tiny enough for the test suite
(2 cores). tests/test_methods_demo.py trains every method listed here from its demo YAML, resumes it exactly and
evaluates its exported encoder; tests/test_ddp_methods.py checks its gradients under two gloo processes.
Adding a method = adding its line here."""

TINY: dict[str, list[str]] = {
    "byol": ["trainer.batch_size=4", "data.img_size=48", "method.crop_size=32"],
    "rho_byol": ["trainer.batch_size=2", "data.img_size=40", "method.crop_size=32"],
}
