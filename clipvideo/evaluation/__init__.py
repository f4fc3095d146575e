"""Scoring trained variants: metrics with bootstrap intervals (metrics), one variant on the test videos
(evaluate), the ranking with paired intervals (report) and pictures of the errors (gallery)."""
