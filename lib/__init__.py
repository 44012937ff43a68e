"""The domain of the CLIP search service: settings, model, data, catalog, index store, vocabulary."""
