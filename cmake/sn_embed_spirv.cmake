# Build-time helper (cmake -P): writes SPIR-V file IN as a C array named VAR into OUT.
file(READ "${IN}" hex HEX)
string(LENGTH "${hex}" n)
math(EXPR words "${n} / 8")
math(EXPR rem "${n} % 8")
if(NOT rem EQUAL 0 OR words EQUAL 0)
  message(FATAL_ERROR "${IN}: not SPIR-V (size not a multiple of 4 bytes)")
endif()
# bytes in file order: the array is uint8_t, aligned for reading as uint32_t words
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," body "${hex}")
string(REGEX REPLACE "((0x..,){16})" "\\1\n" body "${body}")
file(WRITE "${OUT}" "/* generated from ${IN} */\n#include <stddef.h>\n#include <stdint.h>\n"
  "_Alignas(4) const uint8_t ${VAR}[] = {\n${body}\n};\nconst size_t ${VAR}_size = sizeof ${VAR};\n")
