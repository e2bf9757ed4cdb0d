-- description: Read a post's like counter and report it against the post's limit (read-only).
-- readonly: yes
-- KEYS[1] likes: the post's bounded like counter (a string holding an integer, or missing)
-- ARGV[1] limit: the post's like limit, an integer >= 0
-- returns: {likes, remaining, percent_full} where percent_full is a string like "70.0" (Lua floats would be truncated to integers on the way out)
-- result: raw
-- probe: 10
local limit = tonumber(ARGV[1])
if not limit or limit < 0 or limit ~= math.floor(limit) then
  return redis.error_reply('INVALID limit must be an integer >= 0, got ' .. tostring(ARGV[1]))
end
local raw = redis.call('GET', KEYS[1])
local likes = tonumber(raw or '0')
if not likes then
  return redis.error_reply('NOTINT likes counter does not hold an integer')
end
local remaining = math.max(0, limit - likes)
local percent = 100.0
if limit > 0 then
  percent = likes * 100.0 / limit
end
return {likes, remaining, string.format('%.1f', percent)}
