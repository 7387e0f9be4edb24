"""Finding things: embedders, the vector index and the ranking of hybrid recall."""
