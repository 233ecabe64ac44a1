"""The live loop: the ingest stream feeds analytics, analytics feeds the alert rules.

``series`` numbers the signals, ``trails`` keeps the short histories that plans and
forecasts need, ``analytics.LiveAnalytics`` turns batches into ``ConditionInputs`` and
``monitor.Monitor`` evaluates the rules whenever something changed.
"""
