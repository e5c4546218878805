# Warnings for all our code, -Werror in CI, sanitizers on request.
add_compile_options(
  -Wall -Wextra -Wpedantic -Wshadow -Wvla -Wformat=2
  -Wstrict-prototypes -Wmissing-prototypes -Wold-style-definition
  -Wimplicit-fallthrough -Wundef -Wpointer-arith -Wwrite-strings
  -Wno-missing-field-initializers -fno-common)
if(HERD_WERROR)
  add_compile_options(-Werror)
endif()
if(HERD_SANITIZE)
  add_compile_options(-fsanitize=address,undefined -fno-sanitize-recover=all
                      -fno-omit-frame-pointer)
  add_link_options(-fsanitize=address,undefined)
endif()
