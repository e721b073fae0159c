"""The ML library: training, plan search, evaluation, predictor, artifacts and the promotion rule.

No web, queue or HTTP import; its errors are plain domain errors that each service maps."""
