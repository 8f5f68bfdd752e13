/* Unit tests of cove-agent's pure helpers (src/agent/agent_util.c). */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/wait.h>

#include <cmocka.h>

#include "agent_util.h"

/* wait() statuses built the way Linux encodes them (W_EXITCODE / W_STOPCODE). */
#define EXITED(code) (((code) & 0xff) << 8)
#define SIGNALED(sig) ((sig) & 0x7f)

static void join_no_arguments_is_null(void **state)
{
    (void)state;
    char *argv[] = {"/init", NULL};
    assert_null(agent_join_args(1, argv));
    assert_null(agent_join_args(0, argv));
    assert_null(agent_join_args(1, NULL));
}

static void join_single_argument(void **state)
{
    (void)state;
    char *argv[] = {"/init", "uname", NULL};
    char *joined = agent_join_args(2, argv);
    assert_string_equal(joined, "uname");
    free(joined);
}

static void join_several_arguments_with_single_spaces(void **state)
{
    (void)state;
    /* The kernel splits "-- echo hello  world" on whitespace; we rejoin with one space. */
    char *argv[] = {"/init", "echo", "hello", "world;", "poweroff", "-f", NULL};
    char *joined = agent_join_args(6, argv);
    assert_string_equal(joined, "echo hello world; poweroff -f");
    free(joined);
}

static void join_keeps_empty_and_special_arguments(void **state)
{
    (void)state;
    char *argv[] = {"/init", "", "a'b", "$((6*7))", "", NULL};
    char *joined = agent_join_args(5, argv);
    assert_string_equal(joined, " a'b $((6*7)) ");
    free(joined);
}

static void join_ignores_arguments_beyond_argc(void **state)
{
    (void)state;
    char *argv[] = {"/init", "one", "two", NULL};
    char *joined = agent_join_args(2, argv);
    assert_string_equal(joined, "one");
    free(joined);
}

static void status_zero_is_silent(void **state)
{
    (void)state;
    char buf[64] = "garbage";
    assert_false(agent_describe_status(EXITED(0), buf, sizeof(buf)));
    assert_string_equal(buf, "");
}

static void status_nonzero_exit_is_reported(void **state)
{
    (void)state;
    char buf[64];
    assert_true(WIFEXITED(EXITED(3)));
    assert_true(agent_describe_status(EXITED(3), buf, sizeof(buf)));
    assert_string_equal(buf, "command exited with status 3");
    assert_true(agent_describe_status(EXITED(255), buf, sizeof(buf)));
    assert_string_equal(buf, "command exited with status 255");
}

static void status_signal_is_reported(void **state)
{
    (void)state;
    char buf[64];
    assert_true(WIFSIGNALED(SIGNALED(SIGKILL)));
    assert_true(agent_describe_status(SIGNALED(SIGKILL), buf, sizeof(buf)));
    assert_string_equal(buf, "command killed by signal 9");
}

static void status_truncates_to_buffer(void **state)
{
    (void)state;
    char buf[8];
    assert_true(agent_describe_status(EXITED(1), buf, sizeof(buf)));
    assert_string_equal(buf, "command");
}

static void whole_words_of_the_command_line(void **state)
{
    (void)state;
    assert_true(agent_cmdline_has_word("quiet cove.net=nat panic=-1\n", "cove.net=nat"));
    assert_true(agent_cmdline_has_word("cove.net=nat", "cove.net=nat"));
    assert_false(agent_cmdline_has_word("cove.net=natx quiet", "cove.net=nat"));
    assert_false(agent_cmdline_has_word("xcove.net=nat", "cove.net=nat"));
    assert_false(agent_cmdline_has_word("", "cove.net=nat"));
}

static void mounts_from_the_command_line(void **state)
{
    (void)state;
    const char *cmdline = "console=ttyS0 cove.mount=job:/job quiet cove.mount=cache:/var/cache:ro"
                          " cove.mount=:/x cove.mount=t:relative cove.mount=t:/p:rw cove.mount=t"
                          " cove.mountx=a:/b -- cove.mount=last:/l\n";
    const char *cursor = cmdline;
    struct agent_mount m;
    assert_true(agent_next_mount(&cursor, &m));
    assert_string_equal(m.tag, "job");
    assert_string_equal(m.path, "/job");
    assert_false(m.read_only);
    assert_true(agent_next_mount(&cursor, &m));
    assert_string_equal(m.tag, "cache");
    assert_string_equal(m.path, "/var/cache");
    assert_true(m.read_only);
    /* The malformed ones are skipped; the last one counts even after "--". */
    assert_true(agent_next_mount(&cursor, &m));
    assert_string_equal(m.tag, "last");
    assert_string_equal(m.path, "/l");
    assert_false(agent_next_mount(&cursor, &m));
    assert_false(agent_next_mount(&cursor, &m));

    cursor = "cove.mount=a-tag-of-thirty-seven-bytes-xxxxxxxxx:/p";
    assert_false(agent_next_mount(&cursor, &m));
    cursor = "";
    assert_false(agent_next_mount(&cursor, &m));
}

static void read_ahead_file_of_a_device(void **state)
{
    (void)state;
    char buf[64];
    assert_true(agent_read_ahead_path(0, 42, buf, sizeof(buf)));
    assert_string_equal(buf, "/sys/class/bdi/0:42/read_ahead_kb");
    assert_true(agent_read_ahead_path(4095, 1048575, buf, sizeof(buf)));
    assert_string_equal(buf, "/sys/class/bdi/4095:1048575/read_ahead_kb");
    /* Too small a buffer is refused rather than cut to another device's file. */
    char small[30];
    assert_false(agent_read_ahead_path(0, 42, small, sizeof(small)));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(join_no_arguments_is_null),
        cmocka_unit_test(join_single_argument),
        cmocka_unit_test(join_several_arguments_with_single_spaces),
        cmocka_unit_test(join_keeps_empty_and_special_arguments),
        cmocka_unit_test(join_ignores_arguments_beyond_argc),
        cmocka_unit_test(status_zero_is_silent),
        cmocka_unit_test(status_nonzero_exit_is_reported),
        cmocka_unit_test(status_signal_is_reported),
        cmocka_unit_test(status_truncates_to_buffer),
        cmocka_unit_test(mounts_from_the_command_line),
        cmocka_unit_test(read_ahead_file_of_a_device),
        cmocka_unit_test(whole_words_of_the_command_line),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
