-- Archive one item (the backfill of a store written before the archive).
-- KEYS: archive index, archive items, archive all (declared for the cluster's routing)
-- ARGV: archive base, id, version, key, item JSON, term...
return archive_put(ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4], ARGV[5], {unpack(ARGV, 6)})
