"""Node sets and the process supervisor behind `lionfs bringup` (launch files share the sets)."""
