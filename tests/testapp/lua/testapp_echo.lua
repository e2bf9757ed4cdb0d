-- description: Return the key and the first argument (a discovery fixture).
-- readonly: yes
-- KEYS[1] target: any key; not read
-- ARGV[1] word: returned as given
-- returns: {KEYS[1], ARGV[1]}
-- probe: hello
return {KEYS[1], ARGV[1]}
