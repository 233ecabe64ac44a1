"""Analytics: streaming anomaly detection, demand and stock-depletion forecasting, plan adherence.

Layering (as in statsforecast): ``kernels`` are numba functions on arrays and integer codes (no
I/O, no pydantic, no strings); ``models`` wrap them in small fit/update/predict classes;
``depletion``, ``plan`` and ``engine`` compose them for the service; ``cli`` runs the same
detectors with the same defaults on users' CSV exports.
"""
