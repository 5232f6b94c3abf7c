"""Local runs: provisioning a local AWS (moto) like template.yaml, the demo,
the simulated fleet. Needs the `local` extra; never imported by the function."""
