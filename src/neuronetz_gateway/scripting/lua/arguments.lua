-- Argument checks shared by the in-process store's commands (commands.lua,
-- sorted_sets.lua): Redis's error replies for bad arguments, raised as { err = ... }.

local A = {}

function A.fail(message)
  error({ err = message }, 0)
end

function A.syntax()
  A.fail('ERR syntax error')
end

function A.integer(text)
  local n = tonumber(text)
  if n == nil or n ~= math.floor(n) or string.find(text, '[^%-%d]') then
    A.fail('ERR value is not an integer or out of range')
  end
  return n
end

function A.arity(args, n)
  if #args ~= n then A.fail('ERR wrong number of arguments') end
end

return A
