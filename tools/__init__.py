"""Maintainer tools: generators for docs and dvc.yaml, the offline plots page builder, the committed-lock
check and a throwaway Ray cluster for tests and benchmarks. Never imported by the pipeline at run time."""
