# Runs one `klock` command and checks its exit status and output; the command suites
# (tests/sim, tests/torture) register their cases with it.
#   cmake -DKLOCK=<klock binary> -DARGS="sim|abba" -DRC=<expected exit status>
#         [-DOUT=<regex stdout must match>] [-DERR=<regex stderr must match>]
#         [-DWORKDIR=<dir to run in, created>] [-DFILE=<a file the command must write there>]
#         -P expect_command.cmake
# ARGS separates the arguments with '|' (a ';' would be split by add_test).
string(REPLACE "|" ";" args "${ARGS}")
string(REPLACE "|" " " shown "${ARGS}")
if(NOT DEFINED WORKDIR)
  set(WORKDIR "${CMAKE_CURRENT_BINARY_DIR}")
endif()
file(MAKE_DIRECTORY "${WORKDIR}")
if(DEFINED FILE)
  file(REMOVE "${WORKDIR}/${FILE}")
endif()
execute_process(COMMAND ${KLOCK} ${args} WORKING_DIRECTORY "${WORKDIR}"
  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err TIMEOUT 120)
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
if(DEFINED FILE AND NOT EXISTS "${WORKDIR}/${FILE}")
  message(FATAL_ERROR "klock ${shown}: did not write ${FILE}")
endif()
