"""History at bounded cost: aged raw checks compacted into exact rollups (``compactor``)."""
