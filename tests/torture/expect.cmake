# Runs one `klock torture` command and checks its exit status and output (docs/torture.md).
#   cmake -DKLOCK=<klock binary> -DARGS="torture|--type|mutex" -DRC=<expected exit status>
#         -DOUT=<regex stdout must match> [-DERR=<regex stderr must match>] -P expect.cmake
# ARGS separates the arguments with '|' (a ';' would be split by add_test).
string(REPLACE "|" ";" args "${ARGS}")
string(REPLACE "|" " " shown "${ARGS}")
execute_process(COMMAND ${KLOCK} ${args}
  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err TIMEOUT 60)
message("${out}")
if(err)
  message("stderr:\n${err}")
endif()
if(NOT "${rc}" STREQUAL "${RC}")
  message(FATAL_ERROR "klock ${shown}: exit status '${rc}', expected ${RC}")
endif()
if(DEFINED OUT AND NOT out MATCHES "${OUT}")
  message(FATAL_ERROR "klock ${shown}: stdout does not match '${OUT}'")
endif()
if(DEFINED ERR AND NOT err MATCHES "${ERR}")
  message(FATAL_ERROR "klock ${shown}: stderr does not match '${ERR}'")
endif()
