"""A one-step classification template that the deployment-binding tests run against a
counting server."""

TRIAGE_TEMPLATE = """\
name: triage
version: 1
inputs:
  rows: {kind: table, default: rows.csv}
models: {worker: worker_model}
budget: {max_steps: 20, max_tokens: 200000, max_cost_usd: 5.0, max_fanout: 64}
steps:
  - name: load
    uses: acquire.read_table
    with: {input: rows}
  - name: label
    depends_on: [load]
    uses: classify_records
    with: {field: text, labels: [low, high], output_field: risk}
"""
