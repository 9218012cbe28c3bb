/* sig.c — SIGINT and SIGTERM for the long commands (search, run, resume,
 * calibrate). A batch scheduler sends SIGTERM some seconds before SIGKILL
 * (Slurm's KillWait), a user presses Ctrl-C: either way the joules spent so
 * far must reach the run store and the state must stay resumable, so the
 * first signal only sets a flag that the loops read at their next safe point
 * (a training step, between candidates, between measurements). The handler
 * says at once on stderr that it was heard, because a stop at the next safe
 * point can take a moment. A second signal means "now": the process ends at
 * once (the store is transactional, so that is as safe as kill -9).
 *
 * Everything the handler does is async-signal-safe: it stores into a
 * volatile sig_atomic_t, write(2)s text prepared at install, and _exit(2)s. */
#include "base/nas.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t caught;
static char ack[2][200];           /* [0] SIGINT, [1] SIGTERM: "nas CMD: SIGxxx: stopping ..." */
static char again[2][120];         /* the second signal's last words */
static struct sigaction old_int, old_term;
static int installed;

static void say(const char *s)
{
    ssize_t n = write(STDERR_FILENO, s, strlen(s));
    (void)n;
}

static void on_signal(int sig)
{
    int k = sig == SIGTERM;
    if (caught) {
        say(again[k]);
        _exit(128 + sig);
    }
    caught = sig;
    say(ack[k]);
}

void nas_sig_install(const char *cmd, const char *what)
{
    static const char *const names[2] = {"SIGINT", "SIGTERM"};
    for (int k = 0; k < 2; k++) {
        snprintf(ack[k], sizeof ack[k], "\nnas %s: %s: stopping %s (Ctrl-C again to abort at once)\n", cmd,
                 names[k], what);
        snprintf(again[k], sizeof again[k], "nas %s: %s again: aborting now\n", cmd, names[k]);
    }
    caught = 0;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaddset(&sa.sa_mask, SIGINT);   /* one handler at a time: the second waits for the first */
    sigaddset(&sa.sa_mask, SIGTERM);
    sa.sa_flags = SA_RESTART;         /* a read or write in progress goes on; the loops poll the flag */
    sigaction(SIGINT, &sa, installed ? NULL : &old_int);
    sigaction(SIGTERM, &sa, installed ? NULL : &old_term);
    installed = 1;
}

void nas_sig_uninstall(void)
{
    if (!installed)
        return;
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    installed = 0;
}

int nas_sig_caught(void)
{
    return caught;
}

const char *nas_sig_name(int sig)
{
    return sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : "a signal";
}

int nas_sig_exit_code(void)
{
    return caught ? 128 + caught : 0;
}
