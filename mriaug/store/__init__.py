"""What is written once and read by others: atomic files, locks, content ids, TOML files with positions,
run results. The lowest tier: it imports nothing of mriaug but `errors` and `checks`."""
