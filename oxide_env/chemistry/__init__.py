"""The pure chemistry layer: elements, compositions, features, validity and metrics.

Nothing here imports gymnasium, torch or the predictors.
"""
