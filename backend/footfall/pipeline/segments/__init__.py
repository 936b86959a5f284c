"""Real-time segments: the rule format (rules.py, rule.schema.json), the pure evaluator
(evaluate.py) and the consent rule for evaluating a person (consent.py)."""
