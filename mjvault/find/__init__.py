"""Finding and showing what a vault holds: search results, exports, statistics, galleries."""
