"""Templates with triggers (a watched folder, a schedule, a follow-up), shared by the tests
of checking triggers and of building them."""

BUDGET = "budget: {max_steps: 10, max_tokens: 10, max_cost_usd: 1, max_fanout: 4}"

INTAKE = f"""name: intake
version: 2
inputs:
  contracts: {{kind: table}}
  rules: {{kind: json, default: rules.json}}
{BUDGET}
triggers:
  watch: {{input: contracts, folder: incoming, pattern: "*.csv", settle_s: 0}}
steps:
  - {{name: read, uses: t.read_input, with: {{input: contracts}}}}
  - {{name: rules, uses: t.read_input, with: {{input: rules}}}}
"""

NIGHTLY = f"""name: nightly
version: 3
inputs:
  contracts: {{kind: table}}
{BUDGET}
triggers:
  schedule: {{cron: "0 2 * * *", timezone: Europe/Berlin, inputs: {{contracts: data/c.csv}}}}
steps:
  - {{name: read, uses: t.read_input, with: {{input: contracts}}}}
"""

REVIEW = f"""name: review
version: 1
inputs:
  contracts: {{kind: table}}
{BUDGET}
steps:
  - {{name: read, uses: t.read_input, with: {{input: contracts}}}}
"""

FOLLOW_UP = f"""name: follow_up
version: 4
inputs:
  contracts: {{kind: table}}
{BUDGET}
triggers:
  after: {{template: review, status: success}}
steps:
  - {{name: read, uses: t.read_input, with: {{input: contracts}}}}
"""
