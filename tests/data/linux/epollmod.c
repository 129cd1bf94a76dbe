/* An event loop whose epoll interest list changes in place all the time (EPOLL_CTL_MOD,
 * EPOLLONESHOT re-arming, EPOLLET, ADD and DEL) over an eventfd and two pipes, with
 * some arithmetic between rounds so that the run is long enough for time travel to lay
 * snapshots in the middle of it. Deterministic: the order in which epoll_wait reports
 * descriptors is Linux's ready-list order, so the checksum it prints is the native one. */
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include "check.h"

int main(void)
{
    int ep = epoll_create1(0), ev = eventfd(0, EFD_NONBLOCK), p[2], s[2];
    CHECK(ep >= 0 && ev >= 0 && pipe(p) == 0 && pipe(s) == 0);
    struct epoll_event e = {.events = EPOLLIN | EPOLLONESHOT, .data.u64 = 1};
    CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, ev, &e) == 0);
    e = (struct epoll_event){.events = EPOLLIN, .data.u64 = 2};
    CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &e) == 0);
    uint64_t sum = 0, x = 88172645463325252ull;
    for (int round = 0; round < 3000; round++) {
        uint64_t one = 1;
        CHECK(write(ev, &one, 8) == 8);
        if (round % 3 == 0)
            CHECK(write(p[1], "x", 1) == 1);
        if (round % 5 == 0)
            CHECK(write(s[1], "yy", 2) == 2);
        struct epoll_event out[4];
        int n = epoll_wait(ep, out, round % 7 ? 4 : 1, 0);   /* some reports do not fit */
        CHECK(n >= 1);
        for (int i = 0; i < n; i++) {
            char buf[16];
            sum = sum * 31 + out[i].data.u64 * 7 + out[i].events;
            if ((out[i].data.u64 & 15) == 1) {
                CHECK(read(ev, &one, 8) == 8);
                e = (struct epoll_event){.events = EPOLLIN | EPOLLONESHOT, .data.u64 = 1 + (round & 1) * 16};
                CHECK(epoll_ctl(ep, EPOLL_CTL_MOD, ev, &e) == 0);      /* re-arm, new data */
            } else if ((out[i].data.u64 & 15) == 2) {
                CHECK(read(p[0], buf, 1) == 1);
            } else {
                CHECK(read(s[0], buf, 2) == 2);
            }
        }
        if (round % 10 == 0) {                   /* the second pipe comes and goes */
            e = (struct epoll_event){.events = EPOLLIN, .data.u64 = 3 + round};
            CHECK(epoll_ctl(ep, round % 20 ? EPOLL_CTL_DEL : EPOLL_CTL_ADD, s[0], &e) == 0);
        }
        e = (struct epoll_event){.events = EPOLLIN | (round & 2 ? EPOLLET : 0), .data.u64 = 2 + 16 * (round & 7)};
        CHECK(epoll_ctl(ep, EPOLL_CTL_MOD, p[0], &e) == 0);
        for (int k = 0; k < 2000; k++) {         /* work between rounds */
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            sum += x >> 60;
        }
    }
    printf("PASS epollmod %016llx\n", (unsigned long long)sum);
    return 0;
}
