-- unlock: release a lock only if we still own it (compare-and-delete). Used
-- for the broker's restore lock and to release a claimed replay nonce.
--
-- KEYS[1]   lock key (unacked_mutex, or celeriac:replay:<nonce>)
-- ARGV[1]   our token (the value we set)
-- Returns   1 when released, 0 when the key held another value or none
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
