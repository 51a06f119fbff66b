// The index page ({P}/): carries a `?token=` it was opened with over to the page links, so an
// operator can open the index once and go to any page signed in.

const token = new URLSearchParams(location.search).get('token');
if (token) {
  for (const link of document.querySelectorAll('a.page-link')) {
    link.href = `${link.getAttribute('href')}?token=${encodeURIComponent(token)}`;
  }
}
