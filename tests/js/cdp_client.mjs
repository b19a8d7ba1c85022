// Puppeteer, unmodified, against a session's connectUrl (tests/cdp): node cdp_client.mjs <connectUrl> <pageUrl>
// Connects, navigates the session's page, reads the DOM, prints JSON, then browser.close() (Browser.close).
import puppeteer from "puppeteer-core";

const [endpoint, url] = process.argv.slice(2);
const browser = await puppeteer.connect({ browserWSEndpoint: endpoint, defaultViewport: null });
const pages = await browser.pages();
const page = pages[0];
await page.goto(url);
const heading = await page.$eval("h1", (el) => el.textContent);
const title = await page.title();
console.log(JSON.stringify({ pages: pages.length, heading, title, version: await browser.version() }));
await browser.close();
