"""Harnesses shared by the tests and the benchmarks: each starts or drives a real component.

`deployment` runs dagster-webserver and dagster-daemon on a PostgreSQL instance and launches runs
through GraphQL, as the Launchpad does; `celery_workers` starts `marigold worker` processes on
RabbitMQ; `crash_trial` kills a run, or a Celery worker, inside a chunk and recovers it;
`scripted_planner` answers planning requests from a script, through the SGLang-compatible test
server. Test-only helpers live in `tests/support`; nothing here imports from `tests/` or `bench/`.
"""
